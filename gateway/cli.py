"""poolgate serve | check | explain | revoke | demo: argument parsing only, no logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .config import Config

from .errors import ConfigError

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="poolgate", description="Edge authorization gateway for "
                                "Amazon Cognito User Pool (and OIDC) tokens.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the proxy and admin listeners")
    s.add_argument("--config", required=True)
    s.add_argument("--workers", type=int, default=1)

    c = sub.add_parser("check", help="validate and lint a config file")
    c.add_argument("--config", required=True)

    e = sub.add_parser("explain", help="show the decision for one request")
    e.add_argument("--config", required=True)
    g = e.add_mutually_exclusive_group(required=True)
    g.add_argument("--token")
    g.add_argument("--claims", help="JSON claims: skips ALL verification, runs mapping + policy")
    e.add_argument("--method", required=True)
    e.add_argument("--path", required=True)
    e.add_argument("--source-ip", default="127.0.0.1")
    e.add_argument("--header", action="append", default=[], metavar="K:V")
    e.add_argument("--secure", action="store_true")
    e.add_argument("--identity-source")
    e.add_argument("--json", action="store_true")

    r = sub.add_parser("revoke", help="add a revocation entry")
    r.add_argument("--config", required=True)
    k = r.add_mutually_exclusive_group(required=True)
    k.add_argument("--jti")
    k.add_argument("--origin-jti")
    k.add_argument("--sub")
    k.add_argument("--token")
    r.add_argument("--not-before", type=float, help="with --sub: epoch seconds (default now)")
    r.add_argument("--exp", type=float, help="epoch seconds when the revoked token(s) expire")

    d = sub.add_parser("demo", help="a local issuer, an echo upstream and the gateway")
    d.add_argument("what", nargs="*", help="`token alice|bob|expired` mints a token")
    d.add_argument("--port", type=int, default=8080)
    d.add_argument("--admin-port", type=int, default=9901)
    d.add_argument("--issuer-port", type=int, default=9000)
    d.add_argument("--upstream-port", type=int, default=9001)
    d.add_argument("--state-dir")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as e:
        print(f"poolgate: config error: {e}", file=sys.stderr)
        return EXIT_USAGE if args.command in ("check", "explain") else 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:            # expected failures of revoke: a message, no traceback
        from .revocation.api import RevokeError  # noqa: PLC0415
        if isinstance(e, RevokeError):
            print(f"poolgate: {e}", file=sys.stderr)
            return 1
        raise


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from .logs import setup_logging  # noqa: PLC0415
        from .server import serve  # noqa: PLC0415
        from . import accesslog  # noqa: PLC0415
        setup_logging()
        accesslog.install(sys.stderr)
        return serve(args.config, workers=args.workers)
    if args.command == "check":
        return _check(args.config)
    if args.command == "explain":
        from .explain import explain  # noqa: PLC0415
        return asyncio.run(explain(args))
    if args.command == "revoke":
        from .config import load_config  # noqa: PLC0415
        from .revocation.api import revoke_command  # noqa: PLC0415
        cfg = load_config(args.config)
        out = asyncio.run(revoke_command(cfg, jti=args.jti, origin_jti=args.origin_jti,
                                         sub=args.sub, token=args.token,
                                         not_before=args.not_before, exp=args.exp))
        print(json.dumps(out))
        return 0
    if args.command == "demo":
        from .demo import main as demo_main  # noqa: PLC0415
        return demo_main(args)
    return EXIT_USAGE


def _check(path: str) -> int:
    from .config import load_config  # noqa: PLC0415
    from .lint import lint  # noqa: PLC0415
    cfg = load_config(path, strict_env=False)
    _build_decision_parts(cfg)
    for w in cfg.warnings:
        print(f"warning: {w}")
    findings = lint(cfg)
    for f in findings:
        print(f"warning: {f}")
    print(f"{path}: ok ({len(cfg.routes)} routes, {len(cfg.identity_sources)} identity sources, "
          f"{len(cfg.roles)} roles{', ' + str(len(findings)) + ' warnings' if findings else ''})")
    return 0


def _build_decision_parts(cfg: "Config") -> None:
    """Compile what serve would compile (routes, rules, statements, header templates), so
    `check` fails on exactly what `serve` fails on, without starting anything."""
    from .forward.identity import IdentityHeaders  # noqa: PLC0415
    from .mapping import RoleMapper  # noqa: PLC0415
    from .policy import PolicyEngine  # noqa: PLC0415
    from .routes import Router  # noqa: PLC0415
    Router(cfg.routes)
    RoleMapper(cfg)
    PolicyEngine(cfg)
    IdentityHeaders(cfg.downstream_credential.identity_headers)


if __name__ == "__main__":   # pragma: no cover
    sys.exit(main())
