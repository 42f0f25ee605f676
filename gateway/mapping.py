"""Step 4, map: verified claims -> one role (rules | token | default), as an Identity Pool. Pure.

Decisions where MAPPING.md is silent:
- claims read as strings everywhere (``conditions.read_claim``): numbers ``str()``, bools
  ``true``/``false``, ``scope`` space-split into a list; ``null`` counts as missing; an object
  claim is present but compares with nothing.
- an empty list claim is a list with no elements: ``exists`` true, ``not_equal`` true.
- a requested role is honoured whenever it is among the candidates, even when the candidates
  tie (the caller resolves the ambiguity among roles it already holds).
- with ``on_ambiguous: default_role`` a tie's candidates stay requestable next to the default.
- a guest may request only the guest role; without a guest role the answer is role None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .conditions import claim_values, read_claim, scalar_text
from .config import Config, MappingConfig, Rule
from .errors import Forbidden

__all__ = ["RoleChoice", "RoleMapper", "rule_matcher"]

_Test = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class RoleChoice:
    role: str | None          # None only for a guest when there is no guest_role
    rule: str | None          # rule path, "group:<g>", "default_role", "guest_role", "role_request"
    reason: str               # stable code
    candidates: tuple[str, ...]


def rule_matcher(rule: Rule) -> _Test:
    """Compile one rule's ``{claim, op, value}`` into a predicate over the claims."""
    claim, op, value = rule.claim, rule.op, rule.value

    def lift(test: Callable[[str], bool]) -> _Test:
        def run(claims: Mapping[str, Any]) -> bool:
            r = read_claim(claims, claim)
            return r is not None and any(map(test, r[0]))
        return run

    if op == "exists":
        return lambda c: read_claim(c, claim) is not None
    if op == "equals":
        return lift(lambda v: v == value)
    if op == "starts_with":
        return lift(lambda v: v.startswith(value))
    if op == "ends_with":
        return lift(lambda v: v.endswith(value))
    if op == "any_of":
        allowed = frozenset(value)
        return lift(lambda v: v in allowed)
    if op == "regex":
        return lift(lambda v: value.fullmatch(v) is not None)
    if op == "not_equal":
        def not_equal(claims: Mapping[str, Any]) -> bool:
            r = read_claim(claims, claim)
            return r is not None and value not in r[0]
        return not_equal
    if op == "contains":
        def contains(claims: Mapping[str, Any]) -> bool:
            r = read_claim(claims, claim)
            if r is None:
                return False
            values, is_list = r
            return value in values if is_list else any(value in v for v in values)
        return contains
    raise ValueError(f"unknown op {op!r}")


class _Source:
    """One identity source's mapping, compiled.

    Rules are also indexed so that the first matching one is found without testing every
    rule: ``equals``/``any_of`` (and ``contains`` on a list claim, which is membership) by
    exact value, ``starts_with``/``ends_with`` behind one C-level test of all their affixes per
    claim; only what cannot be indexed (``regex``, ``not_equal``, ``exists``, ``contains`` on a
    scalar claim) is tested in order, and only below the best indexed hit.
    """

    def __init__(self, m: MappingConfig) -> None:
        self.m = m
        self.rules = tuple((rule_matcher(r), r) for r in m.rules)
        self.group_to_role = dict(m.token.group_to_role)
        self.arn_to_role = dict(m.token.role_arn_to_role)
        self.exact: dict[str, dict[str, int]] = {}        # claim -> value -> first rule index
        self.member: dict[str, dict[str, int]] = {}       # contains: list claims by value
        affixes: dict[tuple[str, str], list[tuple[str, int]]] = {}
        self.ordered: list[int] = []                      # tested in order
        for i, r in enumerate(m.rules):
            if r.op == "equals":
                self.exact.setdefault(r.claim, {}).setdefault(r.value, i)
            elif r.op == "any_of":
                for v in r.value:
                    self.exact.setdefault(r.claim, {}).setdefault(v, i)
            elif r.op == "contains":
                self.member.setdefault(r.claim, {}).setdefault(r.value, i)
            elif r.op in ("starts_with", "ends_with"):
                affixes.setdefault((r.claim, r.op), []).append((r.value, i))
            else:
                self.ordered.append(i)
        self.affixes = tuple((claim, op, tuple(a for a, _ in lst), tuple(lst))
                             for (claim, op), lst in affixes.items())

    def first_match(self, claims: Mapping[str, Any]) -> int | None:
        """The index of the first rule that matches, as testing them in order would find."""
        best = len(self.rules)
        for claim, table in self.exact.items():
            r = read_claim(claims, claim)
            if r is not None:
                for v in r[0]:
                    i = table.get(v)
                    if i is not None and i < best:
                        best = i
        for claim, table in self.member.items():
            r = read_claim(claims, claim)
            if r is None:
                continue
            values, is_list = r
            for value, i in table.items():
                if i < best and (value in values if is_list
                                 else any(value in v for v in values)):
                    best = i
        for claim, op, all_affixes, rules in self.affixes:
            r = read_claim(claims, claim)
            if r is None:
                continue
            test = str.startswith if op == "starts_with" else str.endswith
            if not any(test(v, all_affixes) for v in r[0]):
                continue                     # one C call rules out every affix of this claim
            for affix, i in rules:
                if i >= best:
                    break
                if any(test(v, affix) for v in r[0]):
                    best = i
                    break
        rules = self.rules
        for i in self.ordered:
            if i >= best:
                break
            if rules[i][0](claims):
                return i
        return best if best < len(rules) else None


class RoleMapper:
    """Chooses the role for verified claims (or the guest role when there are none)."""

    def __init__(self, config: Config) -> None:
        self._default = config.default_role
        self._guest = config.guest_role
        self._sources = {sid: _Source(m) for sid, m in config.mappings.items()}
        self._fallback = _Source(MappingConfig())
        self._tags = dict(config.principal_tags)
        self.trace_all = False           # explain: every matching rule is a candidate

    def choose(self, source_id: str | None, claims: Mapping[str, Any] | None,
               requested_role: str | None = None) -> RoleChoice:
        requested = requested_role.strip() if requested_role else None
        if source_id is None or claims is None:
            return self._guest_choice(requested)
        src = self._sources.get(source_id, self._fallback)
        # the candidate list is needed for a role request (and explain's trace) only: else the
        # first matching rule decides and the rest are not evaluated
        choice, failure = self._decide(src, claims, bool(requested) or self.trace_all)
        if requested:
            if requested in choice.candidates:
                return RoleChoice(requested, "role_request", "role_requested", choice.candidates)
            raise Forbidden("the requested role is not among the roles this user may assume",
                            code="role_not_eligible")
        if failure is not None:
            raise failure
        return choice

    def _guest_choice(self, requested: str | None) -> RoleChoice:
        if self._guest is None:
            return RoleChoice(None, None, "no_guest_role", ())
        if requested and requested != self._guest:
            raise Forbidden("an anonymous caller may assume only the guest role",
                            code="role_not_eligible")
        return RoleChoice(self._guest, "guest_role", "guest_role", (self._guest,))

    def _decide(self, src: _Source, claims: Mapping[str, Any],
                all_candidates: bool = True) -> tuple[RoleChoice, Forbidden | None]:
        mode = src.m.mode
        if mode == "rules":
            if not all_candidates:
                i = src.first_match(claims)
                if i is not None:
                    r = src.rules[i][1]
                    return RoleChoice(r.role, r.path, "rule_matched", (r.role,)), None
                return self._ambiguous(src, (), "no rule matched")
            matched = [r for test, r in src.rules if test(claims)]
            if matched:
                cands = tuple(dict.fromkeys(r.role for r in matched))
                return RoleChoice(matched[0].role, matched[0].path, "rule_matched", cands), None
            return self._ambiguous(src, (), "no rule matched")
        if mode == "token":
            return self._token(src, claims)
        return self._default_choice((), "mode: default")

    def _token(self, src: _Source, claims: Mapping[str, Any]) -> tuple[RoleChoice, Forbidden | None]:
        t = src.m.token
        found: dict[str, str] = {}          # role -> the group / claim that made it a candidate
        if t.source == "groups":
            for g in claim_values(claims, t.groups_claim) or ():
                role = src.group_to_role.get(g)
                if role is not None:
                    found.setdefault(role, f"group:{g}")
            single = "token_group"
        else:
            pref = scalar_text(claims.get("cognito:preferred_role"))
            roles = [src.arn_to_role[a] for a in claim_values(claims, "cognito:roles") or ()
                     if a in src.arn_to_role]
            found = {r: "cognito:roles" for r in roles}
            if pref is not None and pref in src.arn_to_role:
                role = src.arn_to_role[pref]
                cands = tuple(dict.fromkeys([role, *roles]))
                return RoleChoice(role, "cognito:preferred_role", "token_preferred_role", cands), None
            single = "token_roles"
        cands = tuple(found)
        if len(cands) == 1:
            return RoleChoice(cands[0], found[cands[0]], single, cands), None
        for role in t.precedence:
            if role in found:
                return RoleChoice(role, found[role], "token_precedence", cands), None
        return self._ambiguous(src, cands, "candidate roles tie" if cands else "no candidate role")

    def _ambiguous(self, src: _Source, tied: tuple[str, ...],
                   why: str) -> tuple[RoleChoice, Forbidden | None]:
        if src.m.on_ambiguous == "deny":
            return (RoleChoice(None, None, "ambiguous_role", tied),
                    Forbidden(f"{why} and on_ambiguous is deny", code="ambiguous_role"))
        return self._default_choice(tied, why)

    def _default_choice(self, tied: tuple[str, ...],
                        why: str) -> tuple[RoleChoice, Forbidden | None]:
        if self._default is None:
            return (RoleChoice(None, None, "no_role", tied),
                    Forbidden(f"{why} and no default_role is configured", code="no_role"))
        cands = tuple(dict.fromkeys([*tied, self._default]))
        return RoleChoice(self._default, "default_role", "default_role", cands), None

    def tags(self, source_id: str | None, claims: Mapping[str, Any] | None) -> dict[str, str]:
        """principal_tags: tag -> claim value, for scalar claims only (lists/objects left out)."""
        if source_id is None or claims is None:
            return {}
        out = {}
        for tag, claim in self._tags.get(source_id, ()):
            v = claims.get(claim)
            if isinstance(v, (list, tuple, dict)):
                continue
            text = scalar_text(v)
            if text is not None:
                out[tag] = text
        return out
