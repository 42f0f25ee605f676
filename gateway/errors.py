"""The one error tree: every refusal has a stable code, an HTTP status and a challenge."""

from __future__ import annotations

REALM = 'Bearer realm="poolgate"'


class ConfigError(Exception):
    """A configuration problem, named by its key path (``routes[0].auth``) and the fix."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class ListenError(Exception):
    """A listener could not be bound (port in use, no permission): not a config error."""


class GatewayError(Exception):
    """A request refused by the gateway.

    ``error`` is the RFC 6750 (or gateway) code shown to clients, ``code`` the stable
    fine-grained reason: also the metrics ``code`` label and the log ``code`` field.
    """

    status = 400
    error = "invalid_request"
    code = "invalid_request"
    challenge: str | None = None  # None: no WWW-Authenticate; "realm": bare challenge
    retry_after: int | None = None
    route: str | None = None      # set by the pipeline once known, for logs and metrics
    role: str | None = None

    def __init__(self, description: str = "", *, code: str | None = None,
                 retry_after: int | None = None) -> None:
        if code is not None:
            self.code = code
        if retry_after is not None:
            self.retry_after = retry_after
        self.description = description or self.code.replace("_", " ")
        super().__init__(f"{self.code}: {self.description}")

    def www_authenticate(self) -> str | None:
        if self.challenge is None:
            return None
        if self.challenge == "realm":
            return REALM
        desc = self.description.replace("\\", "").replace('"', "'")
        return f'{REALM}, error="{self.challenge}", error_description="{desc}"'

    def body(self, request_id: str) -> dict[str, str]:
        return {"error": self.error, "reason": self.code,
                "error_description": self.description, "request_id": request_id}


class InvalidRequest(GatewayError):
    """400: malformed request (two tokens, bad header, bad path, framing)."""

    status = 400
    error = "invalid_request"
    code = "invalid_request"
    challenge = "invalid_request"


class BadRequest(GatewayError):
    """400 not related to authentication (bad path, framing): no challenge."""

    status = 400
    error = "invalid_request"
    code = "bad_request"


class TokenTooLarge(InvalidRequest):
    status = 400
    code = "token_too_large"


class MissingToken(GatewayError):
    """401 without an error attribute: the route needs a token and none was sent."""

    status = 401
    error = "invalid_token"
    code = "missing_token"
    challenge = "realm"

    def body(self, request_id: str) -> dict[str, str]:
        # RFC 6750 3.1: no error code when the request lacked authentication information.
        return {"error": "unauthorized", "reason": self.code,
                "error_description": self.description, "request_id": request_id}


class InvalidToken(GatewayError):
    """401: the token is bad, expired, for someone else, or revoked."""

    status = 401
    error = "invalid_token"
    code = "invalid_token"
    challenge = "invalid_token"


class Forbidden(GatewayError):
    """403: authenticated, but scope, role or policy says no."""

    status = 403
    error = "insufficient_scope"
    code = "policy_denied"
    challenge = "insufficient_scope"


class NotFound(GatewayError):
    status = 404
    error = "not_found"
    code = "no_route"


class MethodNotAllowed(GatewayError):
    status = 405
    error = "method_not_allowed"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    error = "invalid_request"
    code = "payload_too_large"


class Unavailable(GatewayError):
    """503: keys or the revocation store are unavailable; fail closed."""

    status = 503
    error = "unavailable"
    code = "unavailable"
    retry_after = 5


class BadGateway(GatewayError):
    status = 502
    error = "bad_gateway"
    code = "upstream_unreachable"


class GatewayTimeout(GatewayError):
    status = 504
    error = "gateway_timeout"
    code = "upstream_timeout"
