"""The app factory: one FastAPI app over a store, its limits, its error answers and its four routers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI

from benchmarks.leaderboard.settings import WebSettings
from benchmarks.leaderboard.store import Store
from benchmarks.leaderboard.web.api import router as api_router
from benchmarks.leaderboard.web.context import WebContext
from benchmarks.leaderboard.web.error_responses import install_error_handlers
from benchmarks.leaderboard.web.host import router as host_router
from benchmarks.leaderboard.web.limits import BodyLimitMiddleware, TimeoutMiddleware, body_limit
from benchmarks.leaderboard.web.public import router as public_router
from benchmarks.leaderboard.web.team import router as team_router

log = logging.getLogger(__name__)


def create_app(store: Store, settings: WebSettings = WebSettings(), **submit_options: Any) -> FastAPI:
    """The ASGI app over `store`; `submit_options` pass through to `submit` (e.g. a test clock,
    which phases, selections and the reveal then follow too)."""
    app = FastAPI(title="opreid leaderboard", docs_url=None, redoc_url=None)
    app.state.leaderboard = WebContext(store, settings, dict(submit_options))
    app.add_middleware(
        BodyLimitMiddleware, limit=body_limit(settings.max_upload_bytes, settings.max_body_bytes)
    )
    app.add_middleware(TimeoutMiddleware, timeout_s=settings.request_timeout_s)
    install_error_handlers(app)
    for router in (public_router, team_router, host_router, api_router):
        app.include_router(router)
    log.info("leaderboard web app over %s", store.display_url)
    return app
