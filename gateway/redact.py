"""Secrets out of logs, errors and reprs: URLs with credentials are masked whole."""

from __future__ import annotations

MASK = "***"


def mask_url(url: str) -> str:
    """``scheme://user:pass@host/...`` -> ``scheme://***@host/...``: everything between
    ``://`` and the LAST ``@`` is masked, so a password holding ``@``, ``/`` or ``:`` never
    shows, not even in part. A URL without credentials is returned unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at < 0:
        return url
    return f"{scheme}{sep}{MASK}@{rest[at + 1:]}"
