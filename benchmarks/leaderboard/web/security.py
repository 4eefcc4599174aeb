"""Who is asking: Bearer tokens, the browser session's cookie, and the same-site check of cookie forms.

The session cookie is HttpOnly and SameSite=Strict: never readable by scripts, never sent by
another site's form. A POST that sets it (signing in), uses it or drops it must also come from the
leaderboard's own pages: another site could otherwise sign a visitor in as the attacker's team
(login CSRF), or act with the visitor's session where SameSite is not honoured.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import Depends, Request

from benchmarks.leaderboard.errors import AuthError
from benchmarks.leaderboard.teams import is_host, team_name_of
from benchmarks.leaderboard.web.context import Context, in_thread

SESSION_COOKIE = "opreid_token"
#: Fetch metadata (sent by current browsers) of a request made by this site or typed by the user.
_OWN_SITE = ("same-origin", "none")


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def session_token(request: Request) -> str | None:
    """The token of the browser session, for pages (the API takes Bearer headers)."""
    return request.cookies.get(SESSION_COOKIE) or None


def check_origin(request: Request) -> None:
    """Refuse a browser request sent by another site: its Origin (else its Referer) must name this
    host, and its Sec-Fetch-Site, when given, must be same-origin. `Origin: null` (a sandboxed frame,
    a redirect from elsewhere) is another site. Clients that send none of these (curl) pass."""
    host = request.headers.get("host")
    origin = request.headers.get("origin")
    referer = request.headers.get("referer")
    if origin is not None:
        foreign = urlparse(origin).netloc != host
    else:
        foreign = bool(referer) and urlparse(referer).netloc != host
    fetch_site = request.headers.get("sec-fetch-site")
    if foreign or (fetch_site is not None and fetch_site not in _OWN_SITE):
        raise AuthError("this form must be sent from the leaderboard's own pages")


def same_site_session(request: Request) -> str | None:
    """Dependency of the cookie POSTs: the same-site check first, then the session's token."""
    check_origin(request)
    return session_token(request)


async def signed_in_team(request: Request, ctx: Context) -> str | None:
    """Dependency: the session's token, checked as a team's before the body is read."""
    token = same_site_session(request)
    await in_thread(team_name_of, ctx.store, token)
    return token


async def team_bearer(request: Request, ctx: Context) -> str:
    """Dependency of the API: the Bearer token, checked as a team's before the body is read."""
    token = bearer_token(request)
    await in_thread(team_name_of, ctx.store, token)
    return token or ""


async def is_host_token(ctx: Context, token: str | None) -> bool:
    return bool(token) and await in_thread(is_host, ctx.store, token)


def sign_in(response: Any, request: Request, token: str) -> Any:
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


def sign_out(response: Any) -> Any:
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


#: Route parameters: the session token of a same-site cookie POST; a signed-in team's session
#: token; a team's Bearer token (both checked before the body is read).
SameSiteSession = Annotated[str | None, Depends(same_site_session)]
SignedInTeam = Annotated[str | None, Depends(signed_in_team)]
TeamBearer = Annotated[str, Depends(team_bearer)]
