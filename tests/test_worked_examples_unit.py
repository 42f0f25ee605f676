"""MAPPING.md's two worked examples, row by row, through RoleMapper + PolicyEngine.

The configs are tests/fixtures/example1.yaml and example2.yaml. The 401 for a guest without
access is the pipeline's answer; here its decision is asserted to be a deny.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, load_config
from gateway.errors import Forbidden
from gateway.mapping import RoleMapper
from gateway.policy import PolicyEngine
from gateway.principal import Decision, RequestFacts

FIXTURES = Path(__file__).parent / "fixtures"
OFFICE, ELSEWHERE = "203.0.113.20", "198.51.100.7"


def run(cfg: Config, source: str | None, claims: dict[str, Any] | None, method: str, path: str,
        *, ip: str = ELSEWHERE, secure: bool = True, requested: str | None = None) -> tuple[str | None, Decision]:
    """(role, decision) as the pipeline would compute them; Forbidden from mapping propagates."""
    choice = RoleMapper(cfg).choose(source, claims, requested)
    route = next(r for r in cfg.routes if r.path.match(path) is not None)
    params = route.path.match(path) or {}
    facts = RequestFacts(method=method, path=path, source_ip=ip, secure=secure, now=1.7e9)
    d = PolicyEngine(cfg).evaluate(
        role=choice.role, route=route, upstream=route.upstream or "", facts=facts,
        claims=claims or {}, tags=RoleMapper(cfg).tags(source, claims), path_params=params,
        scopes=(), token_use="id" if source else None, decision_id="row")
    return choice.role, d


# --------------------------------------------------------------------------- example 1

@pytest.fixture(scope="module")
def ex1() -> Config:
    return load_config(FIXTURES / "example1.yaml")


ADMIN = {"sub": "u-admin", "cognito:groups": ["platform-admins"]}
MANAGER = {"sub": "u-mgr", "cognito:groups": ["superadmins"], "custom:tenant_role": "manager",
           "custom:tenant_id": "t1"}


@pytest.mark.parametrize(("row", "claims", "method", "path", "ip", "role", "allowed", "reason"), [
    (1, ADMIN, "DELETE", "/tenants/t9/orders/42", ELSEWHERE, "admin", True, "allowed"),
    (2, ADMIN, "GET", "/admin/stats", ELSEWHERE, "admin", False, "explicit_deny"),
    ("2b", ADMIN, "GET", "/admin/stats", OFFICE, "admin", True, "allowed"),
    (3, MANAGER, "PUT", "/tenants/t1/orders/7", ELSEWHERE, "tenant-manager", True, "allowed"),
    (4, MANAGER, "PUT", "/tenants/t2/orders/7", ELSEWHERE, "tenant-manager", False, "no_allow"),
    (5, {"sub": "u5", "custom:tenant_id": "t3"}, "GET", "/tenants/t3/orders/5", ELSEWHERE,
     "basic", True, "allowed"),
    ("5b", {"sub": "u5", "custom:tenant_id": "t3"}, "GET", "/tenants/t4/orders/5", ELSEWHERE,
     "basic", False, "no_allow"),
    (6, {"sub": "u6"}, "GET", "/tenants/t3/orders/5", ELSEWHERE, "basic", False, "no_allow"),
])
def test_example1(ex1: Config, row: Any, claims: dict[str, Any], method: str, path: str, ip: str,
                  role: str, allowed: bool, reason: str) -> None:
    got_role, d = run(ex1, "pool-main", claims, method, path, ip=ip)
    assert (got_role, d.allowed, d.reason) == (role, allowed, reason), f"row {row}: {d.detail}"


def test_example1_row2_names_the_guardrail_statement(ex1: Config) -> None:
    _, d = run(ex1, "pool-main", ADMIN, "GET", "/admin/stats")
    assert d.statements == ("AdminFromOffice",)


def test_example1_row6_tenant_tag_is_unresolved(ex1: Config) -> None:
    assert RoleMapper(ex1).tags("pool-main", {"sub": "u6"}) == {}
    assert RoleMapper(ex1).tags("pool-main", MANAGER) == {"tenant": "t1"}


def test_example1_row7_requesting_a_role_that_is_not_a_candidate(ex1: Config) -> None:
    with pytest.raises(Forbidden) as e:
        run(ex1, "pool-main", MANAGER, "GET", "/tenants/t1/orders/7", requested="admin")
    assert e.value.code == "role_not_eligible"
    role, d = run(ex1, "pool-main", MANAGER, "GET", "/tenants/t1/orders/7",
                  requested="tenant-manager")
    assert (role, d.allowed) == ("tenant-manager", True)


def test_example1_membership_not_substring(ex1: Config) -> None:
    choice = RoleMapper(ex1).choose("pool-main", MANAGER)
    assert (choice.role, choice.rule, choice.candidates) == (
        "tenant-manager", "mappings.pool-main.rules[1]", ("tenant-manager",))


# --------------------------------------------------------------------------- example 2

@pytest.fixture(scope="module")
def ex2() -> Config:
    return load_config(FIXTURES / "example2.yaml")


def groups(*gs: str, sub: str = "u-1") -> dict[str, Any]:
    return {"sub": sub, "cognito:groups": list(gs)}


SRC = "media-pool"


def test_example2_row1_guest_reads_the_catalog(ex2: Config) -> None:
    role, d = run(ex2, None, None, "GET", "/catalog/new")
    assert (role, d.allowed, d.reason) == ("guest", True, "allowed")
    assert d.statements == ("BrowseCatalog", "GuestReadOnlyCatalog")
    assert [p["resource"] for p in d.permissions] == [["catalog:/**"]]


@pytest.mark.parametrize(("method", "path"), [("GET", "/streams/ep1"), ("POST", "/catalog/new"),
                                              ("PUT", "/users/anon/watchlist/1")])
def test_example2_row2_guest_elsewhere_is_denied(ex2: Config, method: str, path: str) -> None:
    role, d = run(ex2, None, None, method, path)
    assert (role, d.allowed, d.reason) == ("guest", False, "no_allow")   # the pipeline answers 401


@pytest.mark.parametrize(("row", "claims", "method", "path", "requested", "secure", "role",
                          "allowed"), [
    (3, groups("free", "premium"), "GET", "/streams/ep1", None, True, "premium", True),
    ("3b", groups("free"), "GET", "/streams/ep1", None, True, "free", False),
    ("3c", groups("free"), "GET", "/streams/trailers/t1", None, True, "free", True),
    (4, groups("premium", "family"), "GET", "/streams/ep1", None, True, "premium", True),
    (5, groups("staff", "premium", sub="u-5"), "PUT", "/users/u-5/watchlist/9", "premium", True,
     "premium", True),
    ("5b", groups("staff", "premium", sub="u-5"), "PUT", "/users/u-6/watchlist/9", "premium", True,
     "premium", False),
    ("5c", groups("staff", "premium", sub="u-5"), "PUT", "/users/u-5/watchlist/9", None, True,
     "staff", False),
    (6, groups("staff"), "POST", "/cms/articles", None, False, "staff", False),
    ("6b", groups("staff"), "POST", "/cms/articles", None, True, "staff", True),
])
def test_example2(ex2: Config, row: Any, claims: dict[str, Any], method: str, path: str,
                  requested: str | None, secure: bool, role: str, allowed: bool) -> None:
    got_role, d = run(ex2, SRC, claims, method, path, secure=secure, requested=requested)
    assert (got_role, d.allowed) == (role, allowed), f"row {row}: {d.detail}"
    assert d.reason == ("allowed" if allowed else "no_allow")


def test_example2_row4_one_candidate(ex2: Config) -> None:
    assert RoleMapper(ex2).choose(SRC, groups("premium", "family")).candidates == ("premium",)


def test_example2_row7_unmapped_group(ex2: Config) -> None:
    with pytest.raises(Forbidden) as e:
        run(ex2, SRC, groups("vip"), "GET", "/catalog/new")
    assert e.value.code == "ambiguous_role"
    lenient = with_mapping(ex2, on_ambiguous="default_role")
    role, d = run(lenient, SRC, groups("vip"), "GET", "/catalog/new")
    assert (role, d.allowed) == ("free", True)


def test_example2_row8_tie_without_precedence(ex2: Config) -> None:
    no_precedence = with_mapping(ex2, precedence=())
    with pytest.raises(Forbidden) as e:
        run(no_precedence, SRC, groups("premium", "staff"), "GET", "/streams/ep1")
    assert e.value.code == "ambiguous_role"
    role, _ = run(ex2, SRC, groups("premium", "staff"), "GET", "/streams/ep1")
    assert role == "staff"                                        # with the precedence list


def with_mapping(cfg: Config, *, on_ambiguous: str | None = None,
                 precedence: tuple[str, ...] | None = None) -> Config:
    m = cfg.mappings[SRC]
    if precedence is not None:
        m = dataclasses.replace(m, token=dataclasses.replace(m.token, precedence=precedence))
    if on_ambiguous is not None:
        m = dataclasses.replace(m, on_ambiguous=on_ambiguous)
    return dataclasses.replace(cfg, mappings={**cfg.mappings, SRC: m})
