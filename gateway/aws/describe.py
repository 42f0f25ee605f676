"""What the AWS room would send STS for a role and claims, for ``poolgate explain`` (pure)."""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import GatewayError
from .render import session_name, source_identity
from .room import AwsRoom


def describe(room: AwsRoom, role: str | None, claims: Mapping[str, Any],
             tags: Mapping[str, str]) -> dict[str, Any]:
    """``aws_*`` explain lines: role ARN, the rendered session policy (the JSON STS receives as
    ``Policy``), session tags and name; or why no credentials would be obtained."""
    tpl = room.templates.get(role) if role is not None else None
    if tpl is None or room.cfg is None:
        return {}
    out: dict[str, Any] = {"aws_role_arn": tpl.role_arn, "aws_flow": room.cfg.flow}
    try:
        policy, rendered_tags = tpl.render(claims, tags)
    except GatewayError as e:
        out["aws_error"] = f"{e.code}: {e.description}"
        return out
    sub = claims.get("sub") if isinstance(claims.get("sub"), str) else None
    if room.cfg.flow == "assume_role":
        out["aws_session_name"] = session_name(sub)
        if sub is not None:
            out["aws_source_identity"] = source_identity(sub)
    if policy is not None:
        out["aws_session_policy"] = policy
    if rendered_tags:
        out["aws_session_tags"] = [f"{k}={v}" for k, v in rendered_tags]
    return out
