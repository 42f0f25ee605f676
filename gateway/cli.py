"""poolgate serve | check | explain | revoke | demo: argument parsing only, no logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    pass

from .errors import ConfigError, ListenError

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="poolgate", description="Edge authorization gateway for "
                                "Amazon Cognito User Pool (and OIDC) tokens.")
    sub = p.add_subparsers(dest="command", required=True)
    cfg_help = "the poolgate YAML config file (required)"

    s = sub.add_parser("serve", help="run the proxy and admin listeners",
                       description="Run the proxy and admin listeners. Prints `poolgate "
                       "listening proxy=H:P admin=H:P` once both are bound, then logs "
                       "`poolgate ready` when /readyz turns 200. Exit 2 on a config error.")
    s.add_argument("--config", required=True, metavar="FILE", help=cfg_help)
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes sharing both listeners (default: %(default)s; "
                        "N > 1 needs revocation.store redis or none, and signing keys)")

    c = sub.add_parser("check", help="validate and lint a config file",
                       description="Validate a config file exactly as `serve` does (same "
                       "messages), then lint it. Exit 0 when `serve` would start, 2 otherwise.")
    c.add_argument("--config", required=True, metavar="FILE", help=cfg_help)
    c.add_argument("--workers", type=int, default=1, metavar="N",
                   help="validate for `serve --workers N` (default: %(default)s)")

    e = sub.add_parser("explain", help="show the decision for one request",
                       description="Trace the decision for one request: role, decision, "
                       "reason. Exit 0 allow, 1 deny or invalid token, 2 usage or config error.")
    e.add_argument("--config", required=True, metavar="FILE", help=cfg_help)
    g = e.add_mutually_exclusive_group(required=True)
    g.add_argument("--token", metavar="JWT", help="a token to verify (JWKS fetched) and decide on (required: "
                        "--token or --claims)")
    g.add_argument("--claims", metavar="JSON",
                   help="JSON claims: skips ALL verification, runs mapping + policy "
                        "(required: --token or --claims)")
    e.add_argument("--method", required=True, metavar="M", help="HTTP method (required)")
    e.add_argument("--path", required=True, metavar="P", help="request path (required)")
    e.add_argument("--source-ip", default="127.0.0.1", metavar="IP",
                   help="client address for req:source_ip (default: %(default)s)")
    e.add_argument("--header", action="append", default=[], metavar="K:V",
                   help="a request header; repeat for more (default: none)")
    e.add_argument("--secure", action="store_true",
                   help="the request came over https (req:secure; default: off)")
    e.add_argument("--identity-source", metavar="ID",
                   help="identity source id (default: the one whose issuer matches, else the "
                        "first)")
    e.add_argument("--json", action="store_true", help="print the trace as JSON (default: off)")

    r = sub.add_parser("revoke", help="add a revocation entry",
                       description="Write one revocation entry to the configured store (with "
                       "store: memory, through the running gateway's admin API).")
    r.add_argument("--config", required=True, metavar="FILE", help=cfg_help)
    k = r.add_mutually_exclusive_group(required=True)
    one = "(required: exactly one of --jti, --origin-jti, --sub, --token)"
    k.add_argument("--jti", metavar="JTI", help=f"revoke the one token with this jti {one}")
    k.add_argument("--origin-jti", metavar="OJTI",
                   help=f"revoke a refresh-token family (Cognito origin_jti) {one}")
    k.add_argument("--sub", metavar="SUB",
                   help=f"revoke every token of this user issued before --not-before {one}")
    k.add_argument("--token", metavar="JWT",
                   help=f"revoke this token (its jti, else sub + iat) {one}")
    r.add_argument("--not-before", type=int, metavar="EPOCH",
                   help="with --sub: whole epoch seconds (default: now)")
    r.add_argument("--exp", type=int, metavar="EPOCH",
                   help="whole epoch seconds when the revoked token(s) expire; sets the "
                        "entry's TTL (default: long enough for the longest token the identity "
                        "sources accept; see README, Revocation)")

    d = sub.add_parser("demo", help="a local issuer, an echo upstream and the gateway",
                       description="Run a local dev issuer, an echo upstream and the gateway "
                       "on loopback, and print ready-to-paste curl commands. "
                       "`poolgate demo token alice|bob|expired` prints one more token.")
    d.add_argument("what", nargs="*", help="`token alice|bob|expired` mints a token")
    d.add_argument("--port", type=int, default=8080, metavar="P",
                   help="gateway proxy port (default: %(default)s; 0 = any free port)")
    d.add_argument("--admin-port", type=int, default=9901, metavar="P",
                   help="admin listener port (default: %(default)s)")
    d.add_argument("--issuer-port", type=int, default=9000, metavar="P",
                   help="dev issuer port (default: %(default)s)")
    d.add_argument("--upstream-port", type=int, default=9001, metavar="P",
                   help="echo upstream port (default: %(default)s)")
    d.add_argument("--state-dir", metavar="DIR",
                   help="where the demo keeps its private keys (issuer and credential "
                        "signing key) across runs (default: $XDG_STATE_HOME/poolgate-demo, "
                        "else ~/.local/state/poolgate-demo)")
    return p


def _say(line: str) -> None:
    """One line on stderr, after every queued log line: the log writer is a thread, and a
    warning logged just before a refusal must not split the refusal's line."""
    from .logs import stop_logging  # noqa: PLC0415
    stop_logging()
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as e:
        # the same line and exit code from every command (2: usage or config error); never a
        # traceback, which could print config values
        _say(f"poolgate: config error: {e}")
        return EXIT_USAGE
    except ListenError as e:
        _say(f"poolgate: {e}")
        return 1
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
        return _check(args.config, args.workers)
    if args.command in ("explain", "revoke"):
        _print_config_warnings(sys.stderr)
    if args.command == "revoke":
        from .logs import setup_logging  # noqa: PLC0415
        setup_logging()                 # the audit line of a direct (Redis) write, on stderr
    if args.command == "explain":
        from .explain import explain  # noqa: PLC0415
        return asyncio.run(explain(args))
    if args.command == "revoke":
        from .config import load_config  # noqa: PLC0415
        from .revocation.command import revoke_command  # noqa: PLC0415
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


def _check(path: str, workers: int = 1) -> int:
    """What ``serve`` validates (``server.validate``: the same code, so the same refusals and
    messages), then lint. Warnings (an unset optional ``${NAME}``, lint findings) keep exit 0."""
    from .lint import lint  # noqa: PLC0415
    from .server import validate  # noqa: PLC0415
    _print_config_warnings()
    cfg = validate(path, workers)
    findings = lint(cfg)
    for f in findings:
        print(f"warning: {f}")
    print(f"{path}: ok ({_n(len(cfg.routes), 'route')}, "
          f"{_n(len(cfg.identity_sources), 'identity source')}, {_n(len(cfg.roles), 'role')}"
          f"{', ' + _n(len(findings), 'warning') if findings else ''})")
    return 0


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _print_config_warnings(stream: Any = None) -> None:
    """The loader logs each config warning once on ``poolgate.config``: print it as
    ``warning: ...`` (stdout for ``check``; stderr where stdout carries a result)."""
    import logging  # noqa: PLC0415

    class _Printer(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(f"warning: {record.getMessage()}", file=stream or sys.stdout, flush=True)

    lg = logging.getLogger("poolgate.config")
    lg.handlers = [_Printer()]
    lg.propagate = False


if __name__ == "__main__":   # pragma: no cover
    sys.exit(main())
