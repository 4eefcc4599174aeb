"""Receiving a submission's upload (the API's and the form's): stream it to a temporary file, then
score and record it in the thread pool, calling it off if the request is cancelled or times out."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from benchmarks.leaderboard.errors import RejectedSubmissionError
from benchmarks.leaderboard.submissions import SubmitResult, Ticket, submit
from benchmarks.leaderboard.teams import team_name_of
from benchmarks.leaderboard.web.context import WebContext, in_thread
from benchmarks.leaderboard.web.security import bearer_token, check_origin, session_token
from benchmarks.metrics.distances import METRICS

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20


def _suffix(filename: str | None) -> str:
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def receive_submission(ctx: WebContext, request: Request, *, from_page: bool) -> SubmitResult:
    """The API (`from_page` False) takes the Bearer token, checked before the upload is read, else a
    `token` field; the page takes its `token` field, else the session of a same-site form."""
    header = bearer_token(request)
    if header and not from_page:
        await in_thread(team_name_of, ctx.store, header)
    form = await request.form(max_files=1, max_fields=10)
    token = (
        (_text(form, "token") or header or None) if from_page else (header or _text(form, "token") or None)
    )
    if not token and from_page:
        check_origin(request)
        token = session_token(request)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise RejectedSubmissionError(["no file uploaded (form field 'file')"])
    fd, tmp = tempfile.mkstemp(prefix="opreid-upload-", suffix=_suffix(upload.filename))
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(_COPY_CHUNK):
                out.write(chunk)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    ticket = Ticket()
    options = {"scoring_deadline_s": ctx.settings.request_timeout_s, **ctx.submit_options}
    job = in_thread(
        submit, ctx.store, tmp_path, token, method=_text(form, "method"), url=_text(form, "url") or None,
        description=_text(form, "description") or None, filename=Path(upload.filename).name,
        similarity=_text(form, "similarity") in ("1", "on", "true"),
        metric=_text(form, "metric") or METRICS[0], ticket=ticket, **options,
    )  # fmt: skip
    task = asyncio.ensure_future(job)
    task.add_done_callback(lambda _t: tmp_path.unlink(missing_ok=True))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if ticket.cancel():
            log.warning(
                "submission called off: the request was cancelled or timed out before it was recorded"
            )
        raise
