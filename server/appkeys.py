"""Typed application keys (``web.AppKey``) for the state the handlers share."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from federation.ports import Transport
from federation.retry import RetryPolicy
from server.config import Settings
from server.metrics import Metrics
from server.services.context import NodeContext
from server.services.federation import Federation
from server.services.inbox.writer import InboxWriter

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
NODE = web.AppKey("node", NodeContext)
METRICS = web.AppKey("metrics", Metrics)
FEDERATION = web.AppKey("federation", Federation)
TRANSPORT = web.AppKey("transport", Transport)
RETRY_POLICY = web.AppKey("retry_policy", RetryPolicy)  # tests: the in-process worker's schedule
INBOX_WRITER = web.AppKey("inbox_writer", InboxWriter)
DRAINING = web.AppKey("draining", asyncio.Event)  # set on SIGTERM: /healthz answers 503 (drain)
