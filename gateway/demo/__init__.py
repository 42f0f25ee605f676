"""`poolgate demo`: a local dev issuer, an echo upstream and the gateway, all on loopback.

``poolgate demo`` runs them in one process and prints ready-to-paste curl commands (then
``poolgate demo ready``); ``poolgate demo token alice|bob|expired`` prints one more token,
signed with the issuer key kept in the state directory. For local development only.
"""

from __future__ import annotations

import sys
from typing import Any

from .issuer import TOKEN_NAMES

__all__ = ["main"]

EXIT_USAGE = 2


def main(args: Any) -> int:
    what = list(getattr(args, "what", None) or [])
    if not what:
        from .runner import main as run  # noqa: PLC0415
        return run(args)
    if what[0] == "token" and len(what) == 2 and what[1] in TOKEN_NAMES:
        return _token(args, what[1])
    print(f"poolgate demo: unknown arguments {' '.join(what)!r}; usage: `poolgate demo` or "
          f"`poolgate demo token {'|'.join(TOKEN_NAMES)}`", file=sys.stderr)
    return EXIT_USAGE


def _token(args: Any, name: str) -> int:
    from .issuer import DemoIssuer  # noqa: PLC0415
    from .state import ISSUER_KEY_FILE, issuer_key_pem, state_dir  # noqa: PLC0415
    try:
        directory = state_dir(getattr(args, "state_dir", None))
    except OSError as e:
        print(f"poolgate demo: cannot use the state directory: {e}", file=sys.stderr)
        return 1
    if not (directory / ISSUER_KEY_FILE).exists():
        print(f"poolgate demo: no issuer key in {directory} yet: created one (a running demo "
              "using another state directory will not accept this token)", file=sys.stderr)
    print(DemoIssuer(issuer_key_pem(directory)).mint(name))
    return 0
