"""Keeping secrets out of logs, errors and summaries."""

from __future__ import annotations

import re

_URI_PASSWORD = re.compile(r"://([^:/@]*):[^@/]*@")
_SECRET_KEY = re.compile(r"password|secret|token", re.IGNORECASE)
MASK = "***"


def mask_uri(uri: str) -> str:
    """`rtsp://user:pass@host/...` -> `rtsp://user:***@host/...`; other text unchanged."""
    return _URI_PASSWORD.sub(rf"://\1:{MASK}@", uri)


def is_secret_key(key: str) -> bool:
    """True for a config key whose value must never be shown (password, secret, token)."""
    return bool(_SECRET_KEY.search(key))
