"""Bearer tokens: random, shown once, stored only as a sha256 hash, compared in constant time.

A token is `olb_` + 43 url-safe characters (256 bits). The hash is unsalted on purpose: tokens
are random, so a salt adds nothing, and an unsalted hash can be looked up by an index.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "olb_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


def redact(text: str) -> str:
    """Replace anything that looks like a token in `text` (used on messages that echo user input)."""
    out, start = [], 0
    while (i := text.find(PREFIX, start)) >= 0:
        j = i + len(PREFIX)
        while j < len(text) and (text[j].isalnum() or text[j] in "-_"):
            j += 1
        out.append(text[start:i] + PREFIX + "***")
        start = j
    out.append(text[start:])
    return "".join(out)
