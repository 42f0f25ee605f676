"""The revocation audit trail: one line on ``poolgate.audit`` per write or delete.

Every writer goes through ``write_entry`` / ``delete_entry`` (the admin API, `poolgate revoke`,
and later a session sign-out), or logs its own outcome with ``audit``. A line carries the entry
(``kind``, ``value``, ``ttl``), who asked (``peer``: the client address, or ``cli`` with the
user), through what (``via``) and the ``outcome``; never a token or the admin token.
"""

from __future__ import annotations

import logging
from typing import Any

from .entries import Entry, RevocationStore, StoreError

log = logging.getLogger("poolgate.audit")

OK = "ok"


def audit(action: str, *, outcome: str, peer: str | None, via: str, kind: str | None = None,
          value: str | None = None, ttl: int | None = None, reason: str | None = None) -> None:
    """Log one audit line. ``action``: ``add`` | ``delete``; ``outcome``: ``ok``,
    ``not_found``, ``refused`` (with ``reason``), ``unauthorized`` or ``error``."""
    fields: dict[str, Any] = {"event": "revocation", "action": action, "kind": kind,
                              "value": value, "ttl": ttl, "peer": peer, "via": via,
                              "outcome": outcome}
    if reason is not None:
        fields["reason"] = reason
    level = logging.INFO if outcome in (OK, "not_found") else logging.WARNING
    what = f"{kind}={value}" if kind else "(no entry)"
    log.log(level, "revocation %s %s: %s", action, what, outcome, extra={"fields": fields})


async def write_entry(store: RevocationStore, entry: Entry, *, peer: str | None,
                      via: str) -> Entry:
    """``store.add(entry)`` with its audit line (outcome ``ok`` or ``error``)."""
    try:
        written = await store.add(entry)
    except StoreError as e:
        audit("add", outcome="error", peer=peer, via=via, kind=entry.kind, value=entry.value,
              ttl=entry.ttl, reason=str(e))
        raise
    audit("add", outcome=OK, peer=peer, via=via, kind=written.kind, value=written.value,
          ttl=written.ttl)
    return written


async def delete_entry(store: RevocationStore, kind: str, value: str, *, peer: str | None,
                       via: str) -> bool:
    """``store.delete(kind, value)`` with its audit line (``ok``, ``not_found`` or ``error``)."""
    try:
        found = await store.delete(kind, value)
    except StoreError as e:
        audit("delete", outcome="error", peer=peer, via=via, kind=kind, value=value,
              reason=str(e))
        raise
    audit("delete", outcome=OK if found else "not_found", peer=peer, via=via, kind=kind,
          value=value)
    return found
