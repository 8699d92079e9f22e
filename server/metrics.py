"""Prometheus metrics of one node (a registry per application, so tests can run several nodes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_latency: Histogram
    associations: Gauge
    members: Gauge
    bound: dict[tuple[str, str, int], Any] = field(default_factory=dict, compare=False, hash=False)
    """Label children already bound, by (method, route, status) (server/http/middlewares.py)."""


def create_metrics() -> Metrics:
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        http_requests=Counter(
            "entraide_http_requests_total",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=registry,
        ),
        http_latency=Histogram(
            "entraide_http_request_seconds", "HTTP request latency", ["route"], registry=registry
        ),
        associations=Gauge("entraide_associations", "Local associations", registry=registry),
        members=Gauge("entraide_local_members", "Local member accounts", registry=registry),
    )
