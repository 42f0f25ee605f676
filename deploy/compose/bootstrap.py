"""DEV-ONLY: create the local Cognito user pool, app client, groups and users in moto; print a token.

Runs against the compose stack's moto (``docker compose run --rm bootstrap``) or any moto
server (``MOTO_ENDPOINT=http://127.0.0.1:5000 python deploy/compose/bootstrap.py``).

Pool and client ids are deterministic: the moto service runs with
``MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY=HASH`` and ``..._CLIENT_ID_STRATEGY=HASH``, so the
ids depend only on the region, the pool name and the request parameters below; they are
written into ``deploy/compose/poolgate.yaml``. This script reuses an existing pool (moto keeps
its state in memory until the container restarts), and checks the ids it got against that
config file, printing the fix if they differ (e.g. after a moto upgrade changed the hash).

Only boto3 is needed; the motoserver/moto image already ships it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import boto3

REGION = "us-east-1"
POOL_NAME = "poolgate-local"
CLIENT_NAME = "poolgate-local-client"
PASSWORD = "Dev-only-Passw0rd!"          # DEV-ONLY: a throwaway password for a throwaway pool
USERS = {"alice": ["admins"], "bob": []}  # alice maps to role admin, bob to the default member
GROUPS = ["admins"]


def client() -> object:
    return boto3.client(
        "cognito-idp",
        region_name=REGION,
        endpoint_url=os.environ.get("MOTO_ENDPOINT", "http://moto:5000"),
        aws_access_key_id="testing",       # moto accepts any credentials
        aws_secret_access_key="testing",
    )


def ensure_pool(idp) -> str:
    for pool in idp.list_user_pools(MaxResults=60)["UserPools"]:
        if pool["Name"] == POOL_NAME:
            return pool["Id"]
    # Keep the parameters minimal and fixed: with the HASH strategy they are part of the id.
    return idp.create_user_pool(PoolName=POOL_NAME)["UserPool"]["Id"]


def ensure_client(idp, pool_id: str) -> str:
    for c in idp.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]:
        if c["ClientName"] == CLIENT_NAME:
            return c["ClientId"]
    return idp.create_user_pool_client(UserPoolId=pool_id, ClientName=CLIENT_NAME)[
        "UserPoolClient"]["ClientId"]


def ensure_users(idp, pool_id: str) -> None:
    existing_groups = {g["GroupName"] for g in idp.list_groups(UserPoolId=pool_id)["Groups"]}
    for group in GROUPS:
        if group not in existing_groups:
            idp.create_group(UserPoolId=pool_id, GroupName=group)
    existing = {u["Username"] for u in idp.list_users(UserPoolId=pool_id)["Users"]}
    for user, groups in USERS.items():
        if user not in existing:
            idp.admin_create_user(UserPoolId=pool_id, Username=user, MessageAction="SUPPRESS")
            idp.admin_set_user_password(UserPoolId=pool_id, Username=user, Password=PASSWORD,
                                        Permanent=True)
            for group in groups:
                idp.admin_add_user_to_group(UserPoolId=pool_id, Username=user, GroupName=group)


def access_token(idp, pool_id: str, client_id: str, user: str) -> str:
    res = idp.admin_initiate_auth(UserPoolId=pool_id, ClientId=client_id,
                                  AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                  AuthParameters={"USERNAME": user, "PASSWORD": PASSWORD})
    return res["AuthenticationResult"]["AccessToken"]


def check_config(path: Path, pool_id: str, client_id: str) -> bool:
    """True if the gateway config names this pool and client (a plain text check: no gateway import)."""
    if not path.is_file():
        print(f"note: {path} not found; not checking the ids against the gateway config",
              file=sys.stderr)
        return True
    text = path.read_text(encoding="utf-8")
    ok = True
    for what, value in (("user_pool_id", pool_id), ("client id", client_id)):
        if not re.search(rf"(?<![0-9A-Za-z_]){re.escape(value)}(?![0-9A-Za-z])", text):
            print(f"MISMATCH: {path} does not name the {what} {value!r} that moto returned. "
                  "Is the moto service running with MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY=HASH "
                  f"and ..._CLIENT_ID_STRATEGY=HASH? Otherwise put {value!r} into {path.name} "
                  "and `docker compose restart poolgate`.", file=sys.stderr)
            ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--user", default="alice", choices=sorted(USERS),
                   help="whose access token to print (alice: admins group; bob: no group)")
    p.add_argument("--config", type=Path,
                   default=Path(os.environ.get("POOLGATE_CONFIG", "/etc/poolgate/poolgate.yaml")),
                   help="gateway config to check the ids against")
    args = p.parse_args(argv)
    idp = client()
    pool_id = ensure_pool(idp)
    client_id = ensure_client(idp, pool_id)
    ensure_users(idp, pool_id)
    ok = check_config(args.config, pool_id, client_id)
    print(f"user_pool_id={pool_id}", file=sys.stderr)
    print(f"client_id={client_id}", file=sys.stderr)
    print(f"jwks_uri=http://moto:5000/{pool_id}/.well-known/jwks.json", file=sys.stderr)
    print(access_token(idp, pool_id, client_id, args.user))   # stdout: the token only
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
