"""Verifier: the verified-token cache, route source restrictions, and real Cognito tokens (moto)."""

from __future__ import annotations

import gc
import hashlib

import pytest

from gateway.config import loads_config
from gateway.errors import InvalidToken, Unavailable
from gateway.metrics import Metrics
from gateway.principal import VerifiedToken
from gateway.verify import JwksManager, Verifier

from .helpers import (JwksEndpoint, access_claims, build, cognito_source, make_token,
                      oidc_source)


def _cache_counts(metrics: Metrics) -> tuple[float, float]:
    metrics.flush()                       # the counts are batched; a scrape flushes first
    return (metrics.token_cache.labels(result="hit")._value.get(),
            metrics.token_cache.labels(result="miss")._value.get())


async def test_cache_hit_rechecks_exp_and_counts() -> None:
    metrics = Metrics()
    verifier, mgr, ep, wall, mono = build(metrics=metrics)
    token = make_token(access_claims(exp=1_800_000_000 + 100))
    first = await verifier.verify(token)
    second = await verifier.verify(token)
    assert second is first and first.token_hash == hashlib.sha256(token.encode()).digest()
    assert _cache_counts(metrics) == (1, 1)
    wall.advance(100 + 60 + 1)                          # past exp + skew
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(token)
    assert info.value.code == "token_expired"


async def test_cache_respects_allowed_sources() -> None:
    ep = JwksEndpoint()
    verifier, *_ = build([cognito_source(), oidc_source()], ep)
    token = make_token()
    await verifier.verify(token)
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(token, allowed_sources=("oidc",))
    assert info.value.code == "bad_issuer"
    assert (await verifier.verify(token, allowed_sources=("pool",))).source_id == "pool"


async def test_cache_is_bounded() -> None:
    verifier, *_ = build(cache_size=2)
    tokens = [make_token(access_claims(jti=f"j{i}")) for i in range(5)]
    for t in tokens:
        await verifier.verify(t)
    assert len(verifier._cache) == 2


async def test_cache_entry_dropped_when_keys_go_stale() -> None:
    verifier, mgr, ep, wall, mono = build()
    token = make_token()
    await verifier.verify(token)
    ep.mode = "status"
    mono.advance(3601)
    with pytest.raises(Unavailable) as info:
        await verifier.verify(token)
    assert info.value.code == "jwks_unavailable"


async def test_a_cached_token_is_one_gc_tracked_object() -> None:
    """The cyclic GC scans each cached token itself and nothing per token behind it: the
    header mapping and the key are shared, the claims are untracked atoms and tuples."""
    verifier, *_ = build()
    tokens = [make_token(access_claims(jti=f"j{i}", sub=f"u-{i}", groups=["a", f"g{i}"]))
              for i in range(20)]
    for t in tokens:
        await verifier.verify(t)
    for _ in range(4):
        gc.collect()
    cached = list(verifier._cache.values())
    assert len(cached) == 20 and all(type(v) is VerifiedToken for v in cached)
    shared = {id(VerifiedToken), id(cached[0].header), id(cached[0].jwk), id(cached[0]._layout)}
    for v in cached:
        tracked = {id(r) for r in gc.get_referents(v) if gc.is_tracked(r)}
        assert tracked <= shared, [r for r in gc.get_referents(v) if id(r) in tracked - shared]
    assert cached[3].claims["groups"] == ["a", "g3"]


async def test_claims_are_read_only() -> None:
    verifier, *_ = build()
    vt = await verifier.verify(make_token())
    with pytest.raises(TypeError):
        vt.claims["sub"] = "admin"  # type: ignore[index]


async def test_no_sources_means_every_issuer_is_unknown() -> None:
    mgr = JwksManager([], client=JwksEndpoint().client())
    with pytest.raises(InvalidToken) as info:
        await Verifier([], mgr).verify(make_token())
    assert info.value.code == "bad_issuer"


# --------------------------------------------------------------------------- moto (real tokens)

CONFIG = """
version: 1
identity_sources:
  - id: pool
    cognito: {{region: eu-west-1, user_pool_id: {pool}}}
    jwks_uri: {jwks}
    client_ids: [{client}]
    token_use: {uses}
"""


@pytest.fixture(scope="module")
def moto_pool():
    pytest.importorskip("moto")
    import boto3
    from moto.server import ThreadedMotoServer
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    try:
        host, port = srv.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        idp = boto3.client("cognito-idp", region_name="eu-west-1", endpoint_url=endpoint,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        pool = idp.create_user_pool(PoolName="p")["UserPool"]["Id"]
        client = idp.create_user_pool_client(UserPoolId=pool, ClientName="web")[
            "UserPoolClient"]["ClientId"]
        idp.admin_create_user(UserPoolId=pool, Username="alice", MessageAction="SUPPRESS")
        idp.admin_set_user_password(UserPoolId=pool, Username="alice",
                                    Password="Passw0rd!Passw0rd", Permanent=True)
        auth = idp.admin_initiate_auth(
            UserPoolId=pool, ClientId=client, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "alice", "PASSWORD": "Passw0rd!Passw0rd"},
        )["AuthenticationResult"]
        yield {"pool": pool, "client": client, "jwks": f"{endpoint}/{pool}/.well-known/jwks.json",
               "access": auth["AccessToken"], "id": auth["IdToken"]}
    finally:
        srv.stop()


def _verifier(moto_pool, uses: str, client: str | None = None) -> Verifier:
    cfg = loads_config(CONFIG.format(pool=moto_pool["pool"], jwks=moto_pool["jwks"],
                                     client=client or moto_pool["client"], uses=uses), env={})
    return Verifier(cfg.identity_sources, JwksManager(cfg.identity_sources))


async def test_moto_real_tokens(moto_pool) -> None:
    verifier = _verifier(moto_pool, "[access, id]")
    try:
        access = await verifier.verify(moto_pool["access"])
        assert access.token_use == "access" and access.sub and access.jti
        id_token = await verifier.verify(moto_pool["id"])
        assert id_token.token_use == "id" and id_token.claims["aud"] == moto_pool["client"]
    finally:
        await verifier._keys.aclose()


async def test_moto_id_token_refused_where_only_access(moto_pool) -> None:
    verifier = _verifier(moto_pool, "[access]")
    try:
        with pytest.raises(InvalidToken) as info:
            await verifier.verify(moto_pool["id"])
        assert info.value.code == "bad_token_use"
    finally:
        await verifier._keys.aclose()


async def test_moto_wrong_client_id(moto_pool) -> None:
    verifier = _verifier(moto_pool, "[access, id]", client="someotherclient0000000000")
    try:
        for token in (moto_pool["access"], moto_pool["id"]):
            with pytest.raises(InvalidToken) as info:
                await verifier.verify(token)
            assert info.value.code == "bad_client_id"
    finally:
        await verifier._keys.aclose()
