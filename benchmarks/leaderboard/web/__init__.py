"""The leaderboard's web page and JSON API: FastAPI routers over server-rendered Jinja2 templates.

Pages (`public.py`, `team.py`, `host.py`): `/` a phase's standings (`?phase=`; sortable columns;
full rankings and each top-K track apart; the final private board once revealed), `/submit` the
upload form, `/team` a team's own history, quota and selection for the private board, `/host` the
private standings, the phases (close one now) and the reveal. A token entered on `/team` or
`/host` is kept in an HttpOnly, SameSite=Strict cookie for the browser session (`POST /signout`
drops it); every POST that sets, uses or drops it must come from the site's own pages (`security.py`).

API (`api.py`): `GET /api/info`, `GET /api/standings` (`?phase=`, `?view=private`: the host's bearer
token, or anyone once revealed), `GET /api/teams/{name}/submissions` (that team's or the host's
token), `GET /api/quota`, `POST /api/submit` (multipart `file`, `method`, `url`, `description`,
`similarity`, `metric`; team token as a Bearer header or a `token` field), `GET|POST /api/selection`
(`{"submission_ids": [...]}`), `POST /api/phases/{name}/close` and `POST /api/reveal` (host).
Tokens travel in headers, form bodies or the cookie, never in URLs, so access logs cannot record
them; a Bearer token is checked before the request's body is read.

Limits (`limits.py`, `server.py`): uploads above `max_upload_bytes`, and any other body (JSON, forms)
above `max_body_bytes`, are cut off with 413 while streaming (not after); requests running longer
than `request_timeout_s` get 504, and a submission still being scored is then called off before it
is recorded (no quota used); a connection whose request headers take longer than
`header_deadline_s` is closed. Faults on the host's side (database, dataset) are answered with a
generic 503 and logged: no server path reaches a client.
"""

from benchmarks.leaderboard.settings import WebSettings
from benchmarks.leaderboard.web.app import create_app
from benchmarks.leaderboard.web.log_redaction import install_log_redaction
from benchmarks.leaderboard.web.security import SESSION_COOKIE
from benchmarks.leaderboard.web.server import server_config

__all__ = ["SESSION_COOKIE", "WebSettings", "create_app", "install_log_redaction", "server_config"]
