"""ns per path-pattern match: the old regex translation ("before") vs the linear matcher.

    python tests/bench/micro_match.py [--number 200000]

Prints one JSON line: for each (pattern, path) case, ns per call of each matcher (best of 5,
``timeit``), plus a whole ``Router.match`` over a 6-route table. One core, in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from gateway.config import Route  # noqa: E402
from gateway.patterns import PathPattern, split_path  # noqa: E402
from gateway.routes import Router  # noqa: E402
from tests.pattern_reference import reference_regex  # noqa: E402

CASES = [
    ("/tenants/{tenant_id}/orders/{order_id}", "/tenants/acme/orders/42"),
    ("/public/**", "/public/css/site.css"),
    ("/api/v1/users/*", "/api/v1/users/alice"),
    ("/exports/*-*-*.csv", "/exports/2026-12-08.csv"),
    ("/a/**/b", "/a/x/y/z/b"),
    ("/tenants/{tenant_id}/orders/{order_id}", "/tenants/acme/invoices/42"),    # a miss
]


def ns(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=200_000)
    n = ap.parse_args().number
    out: dict[str, object] = {}
    for pat, path in CASES:
        rx = reference_regex(pat)
        lin = PathPattern.compile(pat)
        segs = split_path(path)
        out[f"{pat} ~ {path}"] = {
            "regex_ns": round(ns(lambda: rx.fullmatch(path), n)),
            "linear_ns": round(ns(lambda: lin.match(path), n)),
            "linear_presplit_ns": round(ns(lambda: lin.match_segments(segs, {}), n)),
        }
    routes = [Route(id=f"r{i}", path=PathPattern.compile(p), methods=None, upstream="u")
              for i, (p, _) in enumerate(CASES[:5])] + [
              Route(id="all", path=PathPattern.compile("/**"), methods=None, upstream="u")]
    router = Router(routes)
    out["router_match_ns"] = {path: round(ns(lambda: router.match("GET", path), n))
                              for _, path in CASES}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
