"""Masking tokens in log records: a token pasted into a URL never reaches uvicorn's logs in clear."""

from __future__ import annotations

import logging
from typing import Any

from benchmarks.leaderboard.tokens import PREFIX, redact


class _RedactTokens(logging.Filter):
    """Masks tokens in the message and in each argument, keeping the record's shape.

    Formatters may rely on `args` (uvicorn's access formatter unpacks five of them), so the
    arguments are redacted in place rather than merged into the message.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: the handler reports it as usual
            return True
        if PREFIX not in message:
            return True
        record.msg = _redact_arg(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        if record.getMessage() != redact(message):  # a token split between the format and an argument
            record.msg, record.args = redact(message), ()
        return True


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value) if PREFIX in value else value
    if isinstance(value, (int, float, type(None))):
        return value
    text = str(value)  # an object that renders a token (a URL, an exception): log its redacted text
    return redact(text) if PREFIX in text else value


def install_log_redaction() -> None:
    """Defence in depth: a token pasted into a URL never reaches uvicorn's logs in clear."""
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "benchmarks.leaderboard"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactTokens) for f in logger.filters):
            logger.addFilter(_RedactTokens())
