"""``GET /_poolgate/aws/credentials``: the user's temporary credentials in the AWS container
credentials shape, so an SDK with ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (and
``AWS_CONTAINER_AUTHORIZATION_TOKEN="Bearer <token>"``) uses them unchanged.

The ``/_poolgate/`` prefix is reserved on the proxy listener: never routed, never forwarded.
The caller goes through the engine's pipeline (verification, revocation, role mapping) like any
route; there are no HTTP statements to evaluate for this path.
"""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..config import Route
from ..errors import MethodNotAllowed, NotFound

if TYPE_CHECKING:
    from ..engine import Engine
    from ..principal import RequestFacts

RESERVED_PREFIX = "/_poolgate/"
CREDENTIALS_PATH = "/_poolgate/aws/credentials"
ROUTE = Route(id="_poolgate.aws.credentials", path=None,  # type: ignore[arg-type]
              methods=frozenset({"GET"}), upstream=None, auth="authenticated")


def is_reserved(path: str) -> bool:
    return path.startswith(RESERVED_PREFIX)


async def serve_reserved(engine: Engine, scope: dict[str, Any],
                         send: Callable[[dict[str, Any]], Awaitable[None]],
                         path: str, facts: RequestFacts, rid: str) -> int:
    """Answer a request under ``/_poolgate/``; returns the status (refusals raise)."""
    if path != CREDENTIALS_PATH or scope["type"] != "http" or not engine.aws.endpoint_enabled:
        raise NotFound("no such gateway endpoint", code="no_route")
    if scope["method"] != "GET":
        raise MethodNotAllowed("the credentials endpoint answers GET only")
    # the user's bearer token, or their browser session (AWS.md)
    token = (await engine.sessions.token_for(scope["headers"])
             if engine.sessions is not None else None)
    outcome = await engine.pipeline.authorize_reserved(ROUTE, scope["headers"],
                                                       scope.get("query_string", b""), facts,
                                                       token=token)
    entry = await engine.aws.credentials(outcome.principal)
    body = json.dumps(entry.value.as_container_json()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()), (b"x-request-id", rid.encode("ascii")),
        (b"date", formatdate(time.time(), usegmt=True).encode("ascii"))]})
    await send({"type": "http.response.body", "body": body})
    return 200
