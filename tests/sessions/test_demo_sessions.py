"""`poolgate demo` prints a browser URL that signs alice in (a session, no token in the browser)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from demo.test_demo import start_demo, stop

from .conftest import browser


def test_demo_prints_a_browser_sign_in_url(tmp_path):
    d = start_demo(tmp_path)
    try:
        out = "\n".join(d.wait_ready())
        m = re.search(r"open (http://127\.0\.0\.1:\d+/_poolgate/login\?rd=/admin/reports) "
                      r"and choose alice", out)
        assert m, out
        with browser() as c:
            r = c.get(m.group(1))
            assert r.status_code == 302
            auth = r.headers["location"]
            form_page = c.get(auth)
            assert form_page.status_code == 200 and "signin-alice" in form_page.text
            form = dict(parse_qsl(urlsplit(auth).query), username="alice")
            r = c.post(f"{urlsplit(auth).scheme}://{urlsplit(auth).netloc}/oauth2/authorize",
                       data=form)
            r = c.get(r.headers["location"])
            assert r.status_code == 302 and r.headers["location"] == "/admin/reports"
            gw = m.group(1).split("/_poolgate/")[0]
            r = c.get(gw + "/admin/reports")
            assert r.status_code == 200, r.text                 # alice: role admin
            assert c.get(gw + "/orders/42").status_code == 200  # scope orders/read
    finally:
        stop(d.proc)
