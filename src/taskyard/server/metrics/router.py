"""``GET /metrics`` in the Prometheus text format.

Who may scrape follows the server setting ``metrics``: ``"auto"`` (the default) answers a client on
loopback without a token and asks anyone else for an admin's bearer token; ``"token"`` asks everyone;
``"open"`` asks no one.
"""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from taskyard.server.metrics import events
from taskyard.server.metrics.collector import StoreCollector
from taskyard.server.plane import Plane
from taskyard.server.routers.deps import admin_user, current_user

router = APIRouter(tags=["metrics"])


def make_registry(plane: Plane) -> CollectorRegistry:
    """This server's gauges, read from its store, and the process's counters and histograms."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(plane.transaction, plane.default_pool))
    registry.register(_Events())
    return registry


class _Events:
    def collect(self):
        return events.REGISTRY.collect()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    plane: Plane = request.app.state.plane
    if needs_token(plane.config.metrics, request):
        await admin_user(await current_user(request, plane))
    registry = request.app.state.metrics_registry
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def needs_token(policy: str, request: Request) -> bool:
    if policy == "open":
        return False
    return policy == "token" or not _on_loopback(request)


def _on_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
