"""Step 0: path normalisation and route matching (gateway/routes.py)."""

from __future__ import annotations

import time

import pytest

from gateway.config import Route
from gateway.errors import BadRequest, NotFound
from gateway.patterns import PathPattern
from gateway.routes import Router, normalise_path


@pytest.mark.parametrize("raw, expected", [
    ("/", "/"),
    ("/orders/42", "/orders/42"),
    ("/a/./b/../c", "/a/c"),
    ("//", "/"),
    ("/a//b", "/a/b"),
    ("/a//b//", "/a/b/"),
    ("/a/b/", "/a/b/"),
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("/%7E", "/~"),
    ("/%7euser", "/~user"),
    ("/%41%62%31%2D%5F%2E", "/Ab1-_."),
    ("/a/%2e%2e/b", "/b"),
    ("/a/%2E/b", "/a/b"),
    ("/a/%2e%2E", "/"),
    ("/x%c3%a9", "/x%C3%A9"),            # non-unreserved escapes stay, hex upper-cased
    ("/a%20b", "/a%20b"),
    ("/a%25b", "/a%25b"),                 # an escaped '%' stays escaped: no double decoding
    ("/x{y}", "/x%7By%7D"),               # so `{` and `%7b` are one resource
    ("/x%7by", "/x%7By"),
    ("/a/...", "/a/..."),
    ("/a/.b/..c", "/a/.b/..c"),
    ("/q:@!$&'()*+,=", "/q:@!$&'()*+,="),
    (b"/bytes/ok", "/bytes/ok"),
])
def test_normalise(raw: str | bytes, expected: str) -> None:
    assert normalise_path(raw) == expected


@pytest.mark.parametrize("raw", [
    "/a%2Fb", "/a%2fb", "/a%5Cb", "/a%5cb", "/a\\b", "/a;b", "/admin;jsessionid=1", "/a%3Bb",
    "/..", "/../a", "/a/../..", "/%2e%2e", "/a/%2e%2e/%2E%2E", "/%2e%2e/etc/passwd",
    "/%zz", "/%4", "/a%", "/%g1", "/%00", "/%0a", "/%7F",
    "/caf\u00e9", b"/caf\xc3\xa9", "/a\tb", "/a\x00", "/a\x7f",
    "", "a/b", "*", b"", b"relative",
])
def test_normalise_refuses(raw: str | bytes) -> None:
    with pytest.raises(BadRequest) as info:
        normalise_path(raw)
    assert info.value.code == "bad_path"
    assert info.value.status == 400


def test_normalise_is_idempotent() -> None:
    for raw in ["/a/./b/../c", "/%7e%2e/x", "/x{y}", "//a//b/", "/x%c3%a9/%2e"]:
        once = normalise_path(raw)
        assert normalise_path(once) == once


def route(rid: str, path: str, methods: list[str] | None = None) -> Route:
    return Route(id=rid, path=PathPattern.compile(path), upstream="orders",
                 methods=frozenset(methods) if methods is not None else None)


ROUTES = [
    route("get-order", "/tenants/{tenant_id}/orders/{order_id}", ["GET"]),
    route("put-order", "/tenants/{tenant_id}/orders/{order_id}", ["PUT", "PATCH"]),
    route("tenant-any", "/tenants/{tenant_id}/**"),
    route("head-health", "/health", ["HEAD"]),
    route("static", "/static/**", ["GET"]),
    route("glob", "/files/*.txt"),
    route("root", "/"),
    route("catch-all-get", "/**", ["GET"]),
]


@pytest.mark.parametrize("method, path, rid, captures", [
    ("GET", "/tenants/t1/orders/o9", "get-order", {"tenant_id": "t1", "order_id": "o9"}),
    ("PUT", "/tenants/t1/orders/o9", "put-order", {"tenant_id": "t1", "order_id": "o9"}),
    ("PATCH", "/tenants/t1/orders/o9", "put-order", {"tenant_id": "t1", "order_id": "o9"}),
    ("DELETE", "/tenants/t1/orders/o9", "tenant-any", {"tenant_id": "t1"}),   # first match wins
    ("HEAD", "/tenants/t1/orders/o9", "tenant-any", {"tenant_id": "t1"}),     # GET is not HEAD
    ("POST", "/tenants/t1", "tenant-any", {"tenant_id": "t1"}),               # ** matches zero
    ("HEAD", "/health", "head-health", {}),
    ("GET", "/health", "catch-all-get", {}),
    ("GET", "/static", "static", {}),
    ("GET", "/static/css/a.css", "static", {}),
    ("DELETE", "/files/a.txt", "glob", {}),
    ("POST", "/", "root", {}),
    ("GET", "/anything/else", "catch-all-get", {}),
])
def test_router_matches(method: str, path: str, rid: str, captures: dict[str, str]) -> None:
    found, got = Router(ROUTES).match(method, path)
    assert (found.id, got) == (rid, captures)


@pytest.mark.parametrize("method, path", [
    ("HEAD", "/static/x"),              # GET-only route, HEAD not implied; catch-all is GET too
    ("POST", "/health"),
    ("POST", "/files/a.md"),
    ("POST", "/tenant/x"),
    ("get", "/health"),                 # methods are case-sensitive
])
def test_router_no_route(method: str, path: str) -> None:
    router = Router(ROUTES)
    assert router.match_or_none(method, path) is None
    with pytest.raises(NotFound) as info:
        router.match(method, path)
    assert (info.value.code, info.value.status) == ("no_route", 404)


def test_first_match_wins_across_prefix_groups() -> None:
    # The wildcard route comes first; the literal-prefix index must not reorder them.
    router = Router([route("wild", "/{any}/x"), route("lit", "/a/x"), route("deep", "/a/**")])
    assert router.match("GET", "/a/x")[0].id == "wild"
    assert router.match("GET", "/a/y")[0].id == "deep"
    assert router.match("GET", "/a")[0].id == "deep"
    with pytest.raises(NotFound):
        router.match("GET", "/b/y")


def test_trailing_slash_is_a_different_path() -> None:
    router = Router([route("plain", "/a/b")])
    assert router.match_or_none("GET", "/a/b/") is None


def test_empty_router() -> None:
    with pytest.raises(NotFound):
        Router([]).match("GET", "/")


def test_thousand_routes_are_fast() -> None:
    routes = [route(f"r{i}", f"/svc{i % 50}/v{i // 50}/items/{{id}}", ["GET"]) for i in range(999)]
    routes.append(route("last", "/svc7/v19/other/**"))
    router = Router(routes)
    assert router.match("GET", "/svc7/v19/other/x/y")[0].id == "last"
    found, caps = router.match("GET", "/svc3/v4/items/abc")
    assert (found.id, caps) == (f"r{4 * 50 + 3}", {"id": "abc"})
    n = 20000
    started = time.perf_counter()
    for _ in range(n):
        router.match_or_none("GET", "/svc3/v4/items/abc")
        router.match_or_none("GET", "/nope/v4/items/abc")
    per_lookup = (time.perf_counter() - started) / (2 * n)
    assert per_lookup < 50e-6, f"{per_lookup * 1e6:.1f} us per lookup"
