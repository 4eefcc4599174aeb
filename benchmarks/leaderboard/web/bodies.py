"""Reading request bodies that are not uploads: JSON objects and forms, refused with 400 when malformed.

Their size is capped before they are read (`limits.BodyLimitMiddleware`, `max_body_bytes`), so a
parse never sees more than that.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from benchmarks.leaderboard.errors import LeaderboardError

JSON_TYPE = "application/json"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def json_object(request: Request, example: str) -> dict[str, Any]:
    """The body as a JSON object; LeaderboardError (400) for invalid JSON, or for JSON that is not an
    object (a list, a string), naming `example`."""
    raw = await request.body()
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # bad syntax, bad encoding, nesting too deep
        raise LeaderboardError(f"the body is not valid JSON; send an object such as {example}") from None
    if not isinstance(value, dict):
        raise LeaderboardError(
            f"the body must be a JSON object such as {example}, not {type(value).__name__}"
        )
    return value


def whole_numbers(values: list[Any], what: str = "submission ids") -> list[int]:
    """Ids from a form or JSON list: whole numbers, as numbers or digit strings; booleans and
    fractions are refused."""
    ids = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise LeaderboardError(f"{what} must be whole numbers")
        try:
            ids.append(int(value))
        except ValueError:
            raise LeaderboardError(f"{what} must be whole numbers") from None
    return ids


async def submission_ids(request: Request, form_field: str) -> list[int]:
    """The submission ids of a selection: `{"submission_ids": [...]}` as JSON (the key is required;
    an empty list clears the selection), or the repeated form field `form_field` (none ticked: an
    empty selection)."""
    kind = media_type(request)
    if kind == JSON_TYPE:
        example = '{"submission_ids": [12, 15]}'
        body = await json_object(request, example)
        values = body.get("submission_ids")
        if not isinstance(values, list):
            raise LeaderboardError(
                f"submission_ids must be a list of ids, e.g. {example} ([] clears the selection)"
            )
    elif kind in FORM_TYPES:
        values = (await request.form(max_files=0, max_fields=200)).getlist(form_field)
    else:
        raise LeaderboardError(
            f'send the selection as {JSON_TYPE} ({{"submission_ids": [...]}}) or as a form, '
            f"not {kind or 'no content type'}"
        )
    return whole_numbers(values)
