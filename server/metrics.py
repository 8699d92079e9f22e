"""Prometheus metrics of one node (a registry per application, so tests can run several nodes)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_latency: Histogram
    associations: Gauge
    members: Gauge


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
