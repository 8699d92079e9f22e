"""The application factory: settings in, a ready ``web.Application`` out. Nothing runs at import."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator

from aiohttp import web

from federation.types import utc_now
from federation.uris import UriScheme
from server.appkeys import ENGINE, METRICS, NODE, SETTINGS
from server.config import Settings
from server.db.engine import create_engine, create_sessionmaker
from server.db.queries import actors as q
from server.http import activitypub, ops, wellknown
from server.http.middlewares import metrics_middleware, problem_middleware, request_id_middleware
from server.http.render import html_page
from server.metrics import create_metrics
from server.services.context import NodeContext
from server.services.keys import LocalKeyCache, load_vault

home_routes = web.RouteTableDef()


@home_routes.get("/")
async def home(request: web.Request) -> web.Response:
    node = request.app[NODE]
    async with node.sessions() as session:
        groups = await q.local_groups(session)
    items = "".join(
        f'<li><a href="{html.escape(g.iri, quote=True)}">{html.escape(g.name)}</a> '
        f"@{html.escape(g.handle)}@{html.escape(node.uris.host)}</li>"
        for g in groups
        if g.discoverable
    )
    body = f"<h1>Entraide</h1><p>{html.escape(node.uris.host)}</p><h2>Associations</h2><ul>{items}</ul>"
    return html_page(title=f"Entraide — {node.uris.host}", body_html=body)


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = create_engine(settings.database)
    app[ENGINE] = engine
    vault = load_vault(settings.storage.secret_key_file)
    app[NODE] = NodeContext(
        settings=settings,
        uris=UriScheme(settings.server.origin),
        sessions=create_sessionmaker(engine),
        vault=vault,
        local_keys=LocalKeyCache(vault),
        clock=utc_now,
    )
    yield
    await engine.dispose()


def create_app(settings: Settings) -> web.Application:
    """Build the application for one node; resources open in ``cleanup_ctx`` when it starts."""
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[request_id_middleware, metrics_middleware, problem_middleware],
    )
    app[SETTINGS] = settings
    app[METRICS] = create_metrics()
    app.cleanup_ctx.append(_database_ctx)
    app.add_routes(home_routes)
    app.add_routes(wellknown.routes)
    app.add_routes(ops.routes)
    app.add_routes(activitypub.routes)
    return app
