"""A real headless browser (Debian chromium + chromium-driver, driven by Selenium): sign in at
the local authorization server, call an API from the page with fetch, refresh transparently
past a short token lifetime, sign out and see a SECOND gateway sharing Redis refuse the cookie,
and the Cognito-style /logout redirect taken. Slow: marked ``slow``."""

from __future__ import annotations

import shutil
import time
import uuid

import httpx
import pytest

from e2e.servers import free_port
from redis_helpers import redis_proc  # noqa: F401 (fixture)

from .conftest import redis_sessions, session_config

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                 reason="needs chromium + chromium-driver (apt-get install -y "
                                        "chromium chromium-driver)")]
webdriver = pytest.importorskip("selenium.webdriver")


@pytest.fixture
def chrome(tmp_path):
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


FETCH = """const done = arguments[arguments.length - 1];
fetch(arguments[0], {headers: {'Accept': 'application/json'}})
  .then(r => done(r.status)).catch(e => done(String(e)));"""


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_browser_sign_in_fetch_refresh_sign_out(chrome, start_gateway, idp, upstream,
                                                redis_proc):  # noqa: F811
    ctl, isrv = idp
    app, usrv = upstream
    ctl.access_lifetime, ctl.rotate_refresh = 4, True
    prefix = f"b{uuid.uuid4().hex[:8]}:"
    port = free_port()
    base = session_config(isrv.url, usrv.url, f"http://127.0.0.1:{port}",
                          refresh_before_seconds=2)
    a = start_gateway(redis_sessions(base, redis_proc.port, prefix), port)
    b = start_gateway(redis_sessions(base, redis_proc.port, prefix))

    chrome.get(a.proxy + "/app/home")                 # a navigation: 302 to sign-in
    _wait(lambda: chrome.current_url.startswith(isrv.url + "/oauth2/authorize"), 10,
          "the sign-in form")
    chrome.find_element("id", "signin-alice").click()
    _wait(lambda: chrome.current_url == a.proxy + "/app/home", 10, "the return to /app/home")
    assert "/app/home" in [s.path for s in app.seen]
    assert not any("poolgate" in "".join(s.header("cookie")) for s in app.seen)

    assert chrome.execute_async_script(FETCH, "/api/orders") == 200
    time.sleep(2.6)                                    # into refresh_before: refreshed in place
    assert chrome.execute_async_script(FETCH, "/api/orders") == 200
    assert ctl.token_calls.count("refresh_token") == 1

    sid = next(c["value"] for c in chrome.get_cookies() if c["name"] == "__Host-poolgate")
    hdr = {"Cookie": f"__Host-poolgate={sid}"}
    assert httpx.get(b.proxy + "/api/x", headers=hdr).status_code == 200

    chrome.execute_script("""const f = document.createElement('form');
        f.method = 'POST'; f.action = '/_poolgate/logout'; document.body.appendChild(f); f.submit();""")
    _wait(lambda: len(ctl.logouts) == 1, 10, "the provider /logout")
    assert ctl.logouts[0]["logout_uri"] == a.proxy + "/"
    assert ctl.revoked
    assert httpx.get(b.proxy + "/api/x", headers=hdr).status_code == 401
    assert not any(c["name"] == "__Host-poolgate" for c in chrome.get_cookies())
