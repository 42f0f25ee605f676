"""The walkthrough `poolgate demo` prints: one ready-to-paste command per decision kind.

Pure: everything it shows (addresses, tokens, jti, admin token, paths) is passed in. Each step
is a ``# N. <kind> -> <status>`` comment followed by commands; a ``#    ... -> <status>``
comment gives the status of the command after it. No trailing comments on command lines, so
every line pastes into bash and zsh alike.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Mapping

READY_LINE = "poolgate demo ready"


@dataclass(frozen=True)
class GuideInput:
    gateway: str                  # http://127.0.0.1:8080
    admin: str                    # http://127.0.0.1:9901
    issuer: str                   # http://127.0.0.1:9000
    upstream: str                 # http://127.0.0.1:9001
    pool_issuer: str              # the tokens' iss
    config_path: str
    state_dir: str
    env: Mapping[str, str]        # what `poolgate revoke --config` needs to reach this demo
    revoke_prog: str              # `poolgate`, or `python -m gateway` when not on PATH
    alice: str
    bob: str
    bob_jti: str
    expired: str
    admin_token: str
    signing_key_file: str
    issuer_key_file: str
    aws_bucket: str | None = None   # the AWS part (moto installed): the bucket behind the gateway
    bob_files: str | None = None    # a second bob token (step 7 revokes the first)


def _curl(url: str, token: str | None = None) -> str:
    cmd = f"curl -si {shlex.quote(url)}"
    if token is not None:
        cmd += " -H " + shlex.quote(f"Authorization: Bearer {token}")
    return cmd


def render(g: GuideInput) -> str:
    gw = g.gateway
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in g.env.items())
    post_body = json.dumps({"jti": g.bob_jti})
    admin_post = (f"curl -si -X POST {shlex.quote(g.admin + '/revocations')}"
                  f" -H {shlex.quote('Authorization: Bearer ' + g.admin_token)}"
                  f" -H 'Content-Type: application/json' -d {shlex.quote(post_body)}")
    lines = [
        "",
        "poolgate demo",
        f"  gateway        {gw}   (config {g.config_path})",
        f"  admin API      {g.admin}   (healthz, readyz, metrics, jwks.json, revocations)",
        f"  dev issuer     {g.issuer}/.well-known/jwks.json, tokens at {g.issuer}/token/<alice|bob|expired>",
        f"                 iss {g.pool_issuer}",
        f"  echo upstream  {g.upstream}   (answers with what it received, credential verified)",
        "  users          alice: group admins -> role admin;  bob: no group -> role member;",
        "                 no token -> role guest;  tokens valid 1 h",
        "                 (more: `poolgate demo token alice|bob|expired`)",
        "",
        "# 1. allowed -> 200: alice (group admins, role admin) may use /admin/**",
        _curl(f"{gw}/admin/reports", g.alice),
        "",
        "# 2. denied -> 403 insufficient_scope: bob (role member) may not use /admin/**",
        _curl(f"{gw}/admin/reports", g.bob),
        "",
        "# 3. invalid -> 401 invalid_token (token_expired): a token that expired an hour ago",
        _curl(f"{gw}/orders/42", g.expired),
        "",
        "# 4. guest -> 200: no token at all; guest_role guest may GET /catalog/**",
        _curl(f"{gw}/catalog/books"),
        "",
        "# 5. public -> 200: /public/** needs no token (one sent there is ignored, not forwarded)",
        _curl(f"{gw}/public/hello"),
        "",
        "# 6. downstream credential -> 200: the echo upstream verifies the gateway-signed",
        f"#    X-Gateway-Credential against {g.admin}/.well-known/jwks.json",
        "#    and shows it decoded under \"credential\" (aud echo, role admin, src_jti, perms)",
        _curl(f"{gw}/orders/42", g.alice),
        "",
        f"# 7. revoked -> 401 invalid_token (token_revoked): revoke bob's token (jti {g.bob_jti})",
        "#    before -> 200",
        _curl(f"{gw}/orders/7", g.bob),
        "#    revoke it: with revocation.store memory, `poolgate revoke` posts to this demo's",
        "#    admin API; these variables let it read the demo config (paste them once):",
        f"export {exports}",
        f"{g.revoke_prog} revoke --config {shlex.quote(g.config_path)} --jti {shlex.quote(g.bob_jti)}",
        "#    or the same entry through the admin API directly -> 201",
        admin_post,
        "#    after -> 401",
        _curl(f"{gw}/orders/7", g.bob),
        *_aws_steps(g),
        "",
        f"admin token: {g.admin_token}",
        f"browser sign-in (a session: the tokens stay in the gateway): open "
        f"{gw}/_poolgate/login?rd=/admin/reports and choose alice",
        f"credential signing key: {g.signing_key_file}   (ES256, kid demo-es256; public half at "
        f"{g.admin}/.well-known/jwks.json)",
        f"issuer key: {g.issuer_key_file}   (state directory {g.state_dir})",
        "Ctrl-C stops the demo.",
        READY_LINE,
    ]
    return "\n".join(lines)


def _aws_steps(g: GuideInput) -> list[str]:
    """Step 8 when moto is installed: S3 behind the gateway, each user confined to a prefix."""
    if g.aws_bucket is None or g.bob_files is None:
        return []
    files = f"{g.gateway}/{g.aws_bucket}/users"
    return [
        "",
        "# 8. AWS credentials -> 200 / 403: S3 (moto, IAM authentication on) behind the gateway;",
        "#    each request is signed with the user's own temporary AWS credentials (sts:AssumeRole,",
        "#    session policy users/${jwt:username}/*); the 403s are S3's own XML AccessDenied",
        "#    alice, her own prefix -> 200",
        _curl(f"{files}/alice/hello.txt", g.alice),
        "#    alice, bob's prefix -> 403",
        _curl(f"{files}/bob/hello.txt", g.alice),
        "#    bob, his own prefix -> 200",
        _curl(f"{files}/bob/hello.txt", g.bob_files),
        "#    bob, alice's prefix -> 403",
        _curl(f"{files}/alice/hello.txt", g.bob_files),
        "#    alice's temporary credentials for any AWS SDK (AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "#    = this URL, AWS_CONTAINER_AUTHORIZATION_TOKEN = \"Bearer <token>\") -> 200",
        _curl(f"{g.gateway}/_poolgate/aws/credentials", g.alice),
    ]
