"""poolgate's proxy app for an ASGI server other than ``poolgate serve`` (the benchmark's
``policy_granian`` scenario): the same engine and config, built from ``POOLGATE_CONFIG``.

    POOLGATE_CONFIG=poolgate.yaml granian --interface asgi --workers 1 granian_app:app

Only the proxy listener: no admin listener, no gateway/listen protocol (granian parses HTTP
itself, so the LIMITS.md head and body limits of the gateway's own protocol do not apply).
"""

from __future__ import annotations

import os

from gateway.app import build_apps
from gateway.config import load_config

app, _admin = build_apps(load_config(os.environ["POOLGATE_CONFIG"]), allow_generated_key=False)
