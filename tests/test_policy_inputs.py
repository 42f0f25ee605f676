"""LIMITS.md "Policy inputs" and framing: one canonical reading of every value a decision reads
(headers under canonical names, variables against the decoded path, encoded query names,
Content-Length spellings). Each row keeps a reproduced attack (issue 11 items 5, 9, 11, 12)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest, GatewayError
from gateway.extract import bearer_token
from gateway.facts import request_facts
from gateway.forward.headers import canonical_request_headers, check_framing
from gateway.routes import normalise_path
from test_policy import allow, deny, engine, route


def evaluate(e: Any, headers: list[tuple[bytes, bytes]], path: str = "/x",
             claims: dict[str, Any] | None = None, role: str = "r") -> Any:
    scope = {"headers": headers, "method": "GET", "scheme": "https"}
    facts = request_facts(scope, normalise_path(path), "192.0.2.1", False, 0.0, ())
    return e.evaluate(role=role, route=route(), upstream="orders", facts=facts,
                      claims=claims or {}, tags={}, path_params={}, scopes=(),
                      token_use="access", decision_id="d")


TENANT = allow(["http:*"], ["orders:/**"],
               condition={"StringEquals": {"req:header/X-Tenant-Id": ["acme"]}})


# (headers, outcome): "allow", "deny" or a 400 reason code
@pytest.mark.parametrize("headers, outcome", [
    ([(b"X-Tenant-Id", b"acme")], "allow"),
    ([(b"x_tenant_id", b"acme")], "allow"),             # one header, whatever the spelling
    ([(b"X.Tenant.Id", b"acme")], "allow"),
    ([(b"X-Tenant-Id", b"globex")], "deny"),
    ([], "deny"),
    # the attack: the first line decided, the upstream read both
    ([(b"X-Tenant-Id", b"acme"), (b"X-Tenant-Id", b"globex")], "ambiguous_header"),
    ([(b"X-Tenant-Id", b"acme"), (b"X_Tenant_Id", b"globex")], "ambiguous_header"),
    ([(b"X-Tenant-Id", b"acme"), (b"x.tenant.id", b"acme")], "ambiguous_header"),
    # other headers may repeat freely
    ([(b"X-Tenant-Id", b"acme"), (b"Accept", b"a"), (b"Accept", b"b")], "allow"),
])
def test_header_conditions_read_every_value(headers, outcome) -> None:
    e = engine({"r": [TENANT]})
    if outcome in ("allow", "deny"):
        assert evaluate(e, headers).allowed is (outcome == "allow")
        return
    with pytest.raises(BadRequest) as err:
        evaluate(e, headers)
    assert err.value.code == outcome and err.value.status == 400


def test_condition_key_spelling_is_canonical_too() -> None:
    e = engine({"r": [allow(["http:*"], ["orders:/**"],
                            condition={"StringEquals": {"req:header/x_tenant.id": ["acme"]}})]})
    assert evaluate(e, [(b"X-Tenant-Id", b"acme")]).allowed


def test_ambiguity_only_for_headers_the_route_reads() -> None:
    e = engine({"r": [TENANT], "other": [allow(["http:*"], ["orders:/**"])]})
    dup = [(b"X-Tenant-Id", b"acme"), (b"X-Tenant-Id", b"globex")]
    assert evaluate(e, dup, role="other").allowed         # no condition reads it
    # a guardrail's condition counts as well
    g = engine({"other": [allow(["http:*"], ["orders:/**"])]}, guardrails=[
        {"name": "g", "applies_to": {"roles": ["*"]}, "statements": [
            deny(["http:*"], ["*:/**"], condition={"StringEquals": {"req:header/X-Tenant-Id": ["x"]}})]}])
    with pytest.raises(BadRequest):
        evaluate(g, dup, role="other")


USERS = allow(["http:*"], ["orders:/users/${jwt:sub}/**"])


# (claim sub, request path, allowed): a segment matches only if, percent-decoded, it is the claim
@pytest.mark.parametrize("sub, path, allowed", [
    ("alice", "/users/alice/x", True),
    ("alice@example.com", "/users/alice@example.com/x", True),
    ("alice@example.com", "/users/alice%40example.com/x", True),    # same resource, encoded
    # the attack: a user literally named alice%40example.com
    ("alice%40example.com", "/users/alice%40example.com/x", False),
    ("alice%40example.com", "/users/alice%2540example.com/x", True),  # what really names it
    ("josé", "/users/jos%C3%A9/x", True),
    ("josé", "/users/jos%c3%a9/x", True),
    ("jos%C3%A9", "/users/jos%C3%A9/x", False),
    ("a/b", "/users/a/b/x", False),                                   # never a segment
    ("", "/users//x", False),
    ("ev\x00il", "/users/ev%00il/x", False),                          # control character
    ("tab\tx", "/users/tab%09x/x", False),
    ("bad", "/users/%FF/x", False),                                   # not UTF-8: no match
    ("*", "/users/anyone/x", False),                                  # literal, never a glob
])
def test_variables_compare_against_decoded_segments(sub, path, allowed) -> None:
    e = engine({"r": [USERS]})
    try:
        p = normalise_path(path)
    except GatewayError:
        assert not allowed                                # refused by the normaliser: fine
        return
    assert evaluate(e, [], p, {"sub": sub}).allowed is allowed


def test_unusable_claim_in_a_deny_fails_closed() -> None:
    e = engine({"r": [allow(["http:*"], ["orders:/**"]),
                      deny(["http:*"], ["orders:/blocked/${jwt:sub}/**"])]})
    assert not evaluate(e, [], "/anything", {"sub": "a/b"}).allowed
    assert evaluate(e, [], "/anything", {"sub": "ok"}).allowed


@pytest.mark.parametrize("query, refused", [
    (b"access_token=t", True),
    (b"access%5Ftoken=t", True),
    (b"access%5ftoken=t", True),
    (b"%61ccess_token=t", True),
    (b"%61%63%63%65%73%73%5F%74%6F%6B%65%6E=t", True),
    (b"a=1&access_token", True),
    (b"access+token=t", False),            # decodes to "access token": another name
    (b"x=access_token", False),            # a value, not a name
    (b"access_tokens=t", False),
    (b"x=%41", False),
])
def test_token_in_query_whatever_the_encoding(query, refused) -> None:
    if refused:
        with pytest.raises(GatewayError) as e:
            bearer_token([(b"authorization", b"Bearer a.b.c")], query)
        assert e.value.code == "token_in_query" and e.value.status == 400
    else:
        assert bearer_token([(b"authorization", b"Bearer a.b.c")], query) == "a.b.c"


# (request headers, 400 reason or the framing headers forwarded)
@pytest.mark.parametrize("raw, result", [
    ([(b"Content-Length", b"03")], [(b"content-length", b"3")]),
    ([(b"content-length", b"5"), (b"Content-Length", b"005")], [(b"content-length", b"5")]),
    ([(b"Content-Length", b"5, 5")], [(b"content-length", b"5")]),
    ([(b"Content_Length", b"40")], "bad_framing"),            # the smuggling attempt
    ([(b"Content.Length", b"40")], "bad_framing"),
    ([(b"Content-Length", b"4"), (b"Content_Length", b"40")], "bad_framing"),
    ([(b"Transfer_Encoding", b"chunked")], "bad_framing"),
    ([(b"Content-Length", b"4"), (b"Transfer-Encoding", b"chunked")], "bad_framing"),
    ([(b"Content-Length", b"+4")], "bad_framing"),
    ([(b"Content-Length", b"4"), (b"Content-Length", b"5")], "bad_framing"),
    ([(b"Content-Length", b"0x10")], "bad_framing"),
    ([(b"Transfer-Encoding", b"chunked")], []),              # hop-by-hop: re-framed by the proxy
])
def test_framing_is_checked_then_rendered_once(raw, result) -> None:
    from gateway.forward.headers import strip_request_headers
    if isinstance(result, str):
        with pytest.raises(BadRequest) as e:
            check_framing(raw)
        assert e.value.code == result
        return
    check_framing(raw)
    out = canonical_request_headers(strip_request_headers(raw, remove=frozenset()))
    assert out == result


def test_underscore_headers_go_out_canonical() -> None:
    out = canonical_request_headers([(b"X_Tenant_Id", b"acme"), (b"Accept", b"*/*"),
                                     (b"x.trace.id", b"1")])
    assert out == [(b"x-tenant-id", b"acme"), (b"Accept", b"*/*"), (b"x-trace-id", b"1")]


def test_explain_reads_headers_as_serve_does(tmp_path, capsys) -> None:
    """`poolgate explain --header` canonicalises names and refuses several values alike."""
    from gateway.cli import main
    cfg = tmp_path / "p.yaml"
    cfg.write_text("""version: 1
identity_sources: [{id: pool, cognito: {region: eu-west-1, user_pool_id: eu-west-1_Abc},
                    jwks_uri: "http://127.0.0.1:1/jwks.json", client_ids: [c]}]
upstreams: {orders: {url: "http://127.0.0.1:9"}}
routes: [{id: x, match: {path: "/**"}, upstream: orders}]
default_role: member
roles: {member: {statements: [{effect: allow, action: "http:*", resource: "orders:/**",
         condition: {StringEquals: {"req:header/X-Tenant-Id": [acme]}}}]}}
""")
    claims = ('{"iss":"https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc","sub":"u",'
              '"token_use":"access","client_id":"c","exp":9999999999}')
    base = ["explain", "--config", str(cfg), "--claims", claims, "--method", "GET", "--path", "/a"]
    assert main([*base, "--header", "X_Tenant_Id:acme"]) == 0
    assert main([*base, "--header", "X_Tenant_Id:acme", "--header", "X-Tenant-Id:globex"]) == 1
    assert "reason: ambiguous_header" in capsys.readouterr().out


@pytest.mark.parametrize("path", ["/files/a%40b/x", "/files/jos%C3%A9/x", "/files/plain/x"])
def test_path_captures_compare_like_the_segment_they_came_from(path: str) -> None:
    """``${path:name}`` is a segment of the same path: compared decoded on both sides."""
    from gateway.routes import Router
    from gateway.config import parse_config
    cfg = parse_config({
        "version": 1,
        "identity_sources": [{"id": "idp", "issuer": "http://127.0.0.1:1/", "audiences": ["a"],
                              "jwks_uri": "http://127.0.0.1:1/jwks.json"}],
        "upstreams": {"orders": {"url": "http://127.0.0.1:9"}},
        "routes": [{"id": "f", "match": {"path": "/files/{name}/**"}, "upstream": "orders"}],
        "roles": {"r": {"statements": [allow(["http:*"], ["orders:/files/${path:name}/**"])]}}},
        env={})
    from gateway.policy import PolicyEngine
    r, params = Router(cfg.routes).match("GET", normalise_path(path))
    scope = {"headers": [], "method": "GET", "scheme": "https"}
    facts = request_facts(scope, normalise_path(path), "192.0.2.1", False, 0.0, ())
    d = PolicyEngine(cfg).evaluate(role="r", route=r, upstream="orders", facts=facts, claims={},
                                   tags={}, path_params=params, scopes=(), token_use=None,
                                   decision_id="d")
    assert d.allowed, d.detail
