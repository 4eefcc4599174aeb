"""What every route reads: the store, the limits, the clock and the templates of one app."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from benchmarks.leaderboard.settings import WebSettings
from benchmarks.leaderboard.store import Store, utcnow

TEMPLATES = Path(__file__).with_name("templates")
T = TypeVar("T")


@dataclass(frozen=True)
class WebContext:
    """One app's store and settings; `submit_options` pass through to `submit` (e.g. a test clock,
    which phases, selections and the reveal then follow too)."""

    store: Store
    settings: WebSettings
    submit_options: dict[str, Any] = field(default_factory=dict)
    templates: Jinja2Templates = field(default_factory=lambda: Jinja2Templates(directory=str(TEMPLATES)))

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.submit_options.get("clock", utcnow)


def web_context(request: Request) -> WebContext:
    return request.app.state.leaderboard


#: The route parameter that receives the app's WebContext.
Context = Annotated[WebContext, Depends(web_context)]


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking library call (database, scoring) in the thread pool."""
    return await run_in_threadpool(functools.partial(fn, *args, **kwargs))
