"""Per-user STS inputs, pure: the session policy and tags rendered from claims, the session name.

A template is compiled once (config load) into literal parts and variables; per request only
the values are checked and joined. A value is inserted only if it cannot change the policy's
meaning: no wildcard (``*``, ``?``), no ``$`` (a new variable), no ``/`` (it would cross a path
segment), no quotes, backslashes or control characters; anything else is
``403 reason: unsafe_policy_value`` (also for an unresolved variable: fail closed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import Forbidden

_VAR = re.compile(r"\$\{(jwt|tag):([^}]+)\}")
_UNSAFE = re.compile(r"[*?$/\\\"'`\x00-\x1f\x7f]")
_SESSION_NAME_BAD = re.compile(r"[^\w+=,.@-]", re.ASCII)
_SOURCE_IDENTITY = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)
MAX_VALUE_CHARS = 256            # an STS session tag value's limit; plenty for a policy value


class UnsafePolicyValue(Forbidden):
    """403: a claim or tag value that could widen (or break) the rendered policy."""

    code = "unsafe_policy_value"


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``${jwt:...}``/``${tag:...}`` holes: literal parts and (kind, name) pairs."""

    parts: tuple[str, ...]
    variables: tuple[tuple[str, str], ...]

    @classmethod
    def compile(cls, text: str) -> Template:
        parts, variables, last = [], [], 0
        for m in _VAR.finditer(text):
            parts.append(text[last:m.start()])
            variables.append((m.group(1), m.group(2)))
            last = m.end()
        parts.append(text[last:])
        return cls(tuple(parts), tuple(variables))

    def render(self, claims: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        if not self.variables:
            return self.parts[0]
        out = [self.parts[0]]
        for (kind, name), part in zip(self.variables, self.parts[1:]):
            out.append(safe_value(kind, name, claims.get(name) if kind == "jwt"
                                  else tags.get(name)))
            out.append(part)
        return "".join(out)


def safe_value(kind: str, name: str, value: Any) -> str:
    """The value as inserted, or ``UnsafePolicyValue`` naming the variable (never the value)."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        what = "unresolved" if value is None else "not a single value"
        raise UnsafePolicyValue(f"${{{kind}:{name}}} is {what}")
    text = str(value) if isinstance(value, (int, float)) else value
    if not isinstance(text, str) or not text or len(text) > MAX_VALUE_CHARS \
            or _UNSAFE.search(text):
        raise UnsafePolicyValue(f"${{{kind}:{name}}} has a value that is not safe in a policy")
    return text


def session_name(sub: str | None) -> str:
    """``RoleSessionName``: ``sub`` reduced to ``[\\w+=,.@-]``, 2..64 characters."""
    name = _SESSION_NAME_BAD.sub("-", sub or "guest")[:64]
    return name if len(name) >= 2 else f"u-{name}"


def source_identity(sub: str | None) -> str:
    """``SourceIdentity`` = ``sub`` (the sanitised session name if STS would refuse the sub)."""
    if sub is not None and _SOURCE_IDENTITY.match(sub):
        return sub
    return session_name(sub)


@dataclass(frozen=True, slots=True)
class RoleTemplates:
    """A role's compiled session policy and session tags."""

    role_arn: str
    policy: Template | None
    tags: tuple[tuple[str, Template], ...]

    def render(self, claims: Mapping[str, Any],
               tags: Mapping[str, str]) -> tuple[str | None, tuple[tuple[str, str], ...]]:
        policy = self.policy.render(claims, tags) if self.policy is not None else None
        rendered = tuple((k, t.render(claims, tags)) for k, t in self.tags)
        return policy, rendered


def compile_role(role_arn: str, session_policy: str | None,
                 session_tags: tuple[tuple[str, str], ...]) -> RoleTemplates:
    """A role's ``aws:`` settings compiled once, at config load."""
    return RoleTemplates(role_arn=role_arn,
                         policy=Template.compile(session_policy) if session_policy else None,
                         tags=tuple((k, Template.compile(v)) for k, v in session_tags))
