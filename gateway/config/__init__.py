"""YAML -> frozen, typed configuration (schema v1), validated once; the only reader of files/env.

Every error is a ``ConfigError`` naming the key path (``routes[0].auth``) and the fix.
``schema`` holds the dataclasses, ``reader`` the safe YAML/env reading, ``sections`` one parser
per section; this module puts a whole file together and checks cross-references.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping as TMapping

import yaml

from ..errors import ConfigError
from .decisions import DecisionsConfig, parse_decisions  # noqa: F401
from .reader import (_MISSING, _EnvStr, _interpolate, _Node, _pairs,  # noqa: F401
                     _UniqueKeyLoader, _Unset, env_warnings, is_loopback)
from .schema import (  # noqa: F401 (re-exported: the typed config is public)
    ALLOWED_ALGS, AUTH_MODES, AdminConfig, COGNITO_POOL, Config, CredentialConfig, Guardrail,
    IdentitySource, JwksSettings, ListenConfig, ListenLimits, LoggingConfig, MappingConfig, MiddlewareConfig,
    OPS, RedisConfig, RevocationConfig, Role, Route, Rule, SCHEMA_VERSION, SigningKey, Statement,
    TlsConfig, TokenMapping, Upstream,
)
from .aws import parse_aws, take_aws_keys
from .sections import (_admin, _check_id, _credential, _identity_source, _listen, _logging,  # noqa: F401
                       _mapping, _middleware, _revocation, _route, _statements, _upstream,
                       condition_operator_base)
from .websocket import WebSocketConfig, parse_websocket  # noqa: F401
from .sessions import SessionsConfig, check_sessions, parse_sessions  # noqa: F401

# --------------------------------------------------------------------------- the whole file

def parse_config(data: Any, *, source: str | None = None,
                 env: TMapping[str, str] | None = None, strict_env: bool = False) -> Config:
    """Validate a parsed YAML document into a frozen ``Config``.

    An unset or empty ``${NAME}`` leaves an optional key out (its default applies; the
    ``warnings`` name NAME) and is a ``ConfigError`` naming the key and NAME in a required one.
    ``strict_env=True`` (for tests of deployment manifests) makes every unset NAME an error.
    """
    missing: list[_Unset] = []
    data = _interpolate(data, os.environ if env is None else env, missing)
    if strict_env and missing:
        raise ConfigError(missing[0].path, missing[0].message())
    aws_parts = take_aws_keys(data)   # AWS.md keys live in other sections: lifted out first
    root = _Node(data if data is not None else {}, "")
    version = root.int("version")
    if version != SCHEMA_VERSION:
        raise ConfigError("version", f"unsupported schema version {version} (this poolgate "
                                     f"reads version {SCHEMA_VERSION})")

    sources_raw = root.raw("identity_sources", [])
    if not isinstance(sources_raw, list):
        raise ConfigError("identity_sources", "expected a list of identity sources")
    sources = tuple(_identity_source(_Node(s, f"identity_sources[{i}]"))
                    for i, s in enumerate(sources_raw))
    _unique([s.id for s in sources], "identity_sources", "id")
    ids = {s.id for s in sources}

    up_node = root.node("upstreams")
    upstreams = {}
    for uid in up_node.data:
        _check_id(uid, up_node.sub(uid))
        if ":" in uid:
            raise ConfigError(up_node.sub(uid), "an upstream id cannot contain ':' (resources "
                                                "are written <upstream id>:<path pattern>)")
        upstreams[uid] = _upstream(uid, up_node.raw(uid), up_node.sub(uid))

    routes_raw = root.raw("routes", [])
    if not isinstance(routes_raw, list):
        raise ConfigError("routes", "expected a list of routes")
    routes = tuple(_route(_Node(r, f"routes[{i}]"), i) for i, r in enumerate(routes_raw))
    _unique([r.id for r in routes], "routes", "id")

    roles_node = root.node("roles")
    roles = {}
    for name in roles_node.data:
        rn = _Node(roles_node.raw(name) or {}, roles_node.sub(name))
        roles[name] = Role(name=name, statements=_statements(rn.raw("statements", []),
                                                             rn.sub("statements")))
        rn.done()

    guard_raw = root.raw("guardrails", [])
    if not isinstance(guard_raw, list):
        raise ConfigError("guardrails", "expected a list of guardrails")
    guardrails = []
    for i, g in enumerate(guard_raw):
        gn = _Node(g, f"guardrails[{i}]")
        at = gn.node("applies_to")
        groles = at.strs("roles", ("*",))
        at.done()
        guardrails.append(Guardrail(name=gn.str("name", f"guardrails[{i}]"), roles=groles,
                                    statements=_statements(gn.raw("statements"), gn.sub("statements"))))
        gn.done()

    map_node = root.node("mappings")
    mappings = {}
    for src in map_node.data:
        if src not in ids:
            raise ConfigError(map_node.sub(src), f"no identity source with id {src!r}")
        mappings[src] = _mapping(_Node(map_node.raw(src), map_node.sub(src)))

    tags_node = root.node("principal_tags")
    principal_tags = {}
    for src in tags_node.data:
        if src not in ids:
            raise ConfigError(tags_node.sub(src), f"no identity source with id {src!r}")
        principal_tags[src] = _pairs(tags_node, src)

    cfg = Config(
        version=version, listen=_listen(root.node("listen")), admin=_admin(root.node("admin")),
        identity_sources=sources, upstreams=upstreams, routes=routes, mappings=mappings,
        principal_tags=principal_tags, default_role=root.str("default_role", None),
        guest_role=root.str("guest_role", None), roles=roles, guardrails=tuple(guardrails),
        revocation=_revocation(root.node("revocation")),
        downstream_credential=_credential(root.node("downstream_credential")),
        middleware=_middleware(root.node("middleware")), logging=_logging(root.node("logging")),
        source=source, warnings=(), sessions=parse_sessions(root),
        aws=parse_aws(aws_parts, roles=roles, upstreams=upstreams),
        websocket=parse_websocket(root.node("websocket")))
    cfg = replace(cfg, decisions=parse_decisions(root, admin_port=cfg.admin.port, proxy_port=cfg.listen.port))
    root.done()
    cfg = dataclasses.replace(cfg, warnings=tuple(env_warnings(missing)))
    _check_references(cfg)
    check_sessions(cfg)
    return cfg


def _unique(values: list[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigError(f"{path}[{i}].{what}", f"duplicate {what} {v!r}")
        seen.add(v)


def _check_references(cfg: Config) -> None:
    """Undefined upstreams, roles and identity sources are errors, not lint warnings."""
    ids = {s.id for s in cfg.identity_sources}
    for i, r in enumerate(cfg.routes):
        if r.upstream is None:
            raise ConfigError(f"routes[{i}].upstream", "is required")
        if r.upstream not in cfg.upstreams:
            raise ConfigError(f"routes[{i}].upstream",
                              f"no upstream {r.upstream!r} (defined: {', '.join(cfg.upstreams) or 'none'})")
        for j, s in enumerate(r.identity_sources or ()):
            if s not in ids:
                raise ConfigError(f"routes[{i}].identity_sources[{j}]", f"no identity source {s!r}")
        if r.auth != "public" and not cfg.identity_sources and cfg.guest_role is None:
            raise ConfigError(f"routes[{i}].auth", "needs a token, but no identity_sources are "
                                                   "configured (add one, or make the route public)")

    def need_role(name: str | None, path: str) -> None:
        if name is not None and name not in cfg.roles:
            raise ConfigError(path, f"no role {name!r} under roles: "
                                    f"(defined: {', '.join(cfg.roles) or 'none'})")

    need_role(cfg.default_role, "default_role")
    need_role(cfg.guest_role, "guest_role")
    for src, m in cfg.mappings.items():
        for rule in m.rules:
            need_role(rule.role, f"{rule.path}.role")
        for g, role in m.token.group_to_role:
            need_role(role, f"mappings.{src}.token.group_to_role.{g}")
        for arn, role in m.token.role_arn_to_role:
            need_role(role, f"mappings.{src}.token.role_arn_to_role.{arn}")
        for i, role in enumerate(m.token.precedence):
            need_role(role, f"mappings.{src}.token.precedence[{i}]")
    if cfg.middleware.service is not None and cfg.middleware.service not in cfg.upstreams:
        # the middleware's service id names resources; it need not be a proxied upstream
        pass


log = logging.getLogger("poolgate.config")


def load_config(path: str | os.PathLike[str], *, strict_env: bool = False,
                env: TMapping[str, str] | None = None) -> Config:
    """Read and validate a poolgate YAML config file (the public loader). Each warning (an
    unset ``${NAME}`` in an optional key) is logged once on ``poolgate.config``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("", f"cannot read config file {str(p)!r}: {e.strerror or e}")
    cfg = loads_config(text, source=str(p), strict_env=strict_env, env=env)
    for w in cfg.warnings:
        log.warning("%s", w, extra={"fields": {"event": "config_warning", "config": str(p)}})
    return cfg


def loads_config(text: str, *, source: str | None = None, strict_env: bool = False,
                 env: TMapping[str, str] | None = None) -> Config:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError("", f"not valid YAML: {_yaml_problem(e)}") from None
    return parse_config(data, source=source, env=env, strict_env=strict_env)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """What is wrong and where (line, column), without the source snippet PyYAML adds: the
    offending line may hold a secret."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        return f"{where}{what or 'syntax error'}"
    return type(e).__name__
