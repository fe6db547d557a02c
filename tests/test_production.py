"""The production configuration, end to end: `manage.py serve` (what `make serve` runs) with
DJANGO_DEBUG=0, a real Postgres database of its own, Redis, two granian workers, and a free
port; requests over real sockets, and a headless Chromium for the admin and the API docs."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from django.conf import settings
from prometheus_client.mmap_dict import MmapedDict

from tests.support.production import ROOT, SECRETS, Server, production_server, throwaway_database

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ADMIN_USER, ADMIN_PASSWORD = "ops", "correct-horse-battery-staple-9"
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR", ROOT / ".ci" / "out" / "screenshots"))


def _token(*, user_id: str | None = None, service_role: bool = False) -> str:
    now = int(time.time())
    claims: dict[str, Any] = (
        {"iss": "supabase", "role": "service_role", "iat": now, "exp": now + 600}
        if service_role
        else {
            "iss": "supabase",
            "aud": "authenticated",
            "role": "authenticated",
            "sub": user_id,
            "iat": now,
            "exp": now + 600,
        }
    )
    return jwt.encode(claims, SECRETS["SUPABASE_JWT_SECRET"], algorithm="HS256")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("needs Postgres (DATABASE_URL=postgres://...)")
    tmp = tmp_path_factory.mktemp("serve")
    with (
        throwaway_database(os.environ["DATABASE_URL"]) as database_url,
        production_server(
            tmp,
            DATABASE_URL=database_url,
            REDIS_URL=os.environ["REDIS_URL"],
            CACHE_KEY_PREFIX=f"prod-test-{os.getpid()}",
            WEB_CONCURRENCY="2",
            WEB_THREADS="2",
            LOG_FORMAT="json",
            DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
            DJANGO_ALLOWED_HOSTS="127.0.0.1,connectors.example.com",
            CACHE_OUTBOX_SWEEP_SECONDS="0.5",
        ) as running,
    ):
        yield running


def _manage(server: Server, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


# --- The server ------------------------------------------------------------------------------
def test_serve_migrates_and_never_seeds_or_prints_a_token(server: Server) -> None:
    out = server.stdout()
    assert "Serving http://127.0.0.1:" in out and "2 workers x 2 threads" in out
    assert "Bearer" not in out + server.log() and "Try it" not in out
    status, _, body = server.get("/readyz")
    assert status == 200, body
    rows = _manage(
        server,
        "shell",
        "-v",
        "0",
        "-c",
        "from connectors.models import PlatformConnection as P; print(P.objects.count())",
    )
    assert rows.strip() == "0"


def test_connections_are_kept_alive_between_requests(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        assert first.status == 200 and first.getheader("Connection", "").lower() != "close"
        conn.request("GET", "/healthz")
        second = conn.getresponse()
        second.read()
        assert second.status == 200
        assert conn.sock is sock, "the server closed the connection after one request"
    finally:
        conn.close()


def test_static_files_are_served_hashed_compressed_and_cached_for_good(server: Server) -> None:
    _, _, page = server.get("/admin/login/")
    hashed = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page)
    assert hashed, page[:2000]
    status, headers, body = server.get(hashed.group(1).decode(), **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers.get("Content-Encoding") in {"gzip", "br"}
    assert "immutable" in headers.get("Cache-Control", "")
    assert len(body) > 100


def test_the_request_id_is_taken_or_made_and_returned(server: Server) -> None:
    _, headers, _ = server.get("/healthz", **{"X-Request-ID": "lb-7f3a.91"})
    assert headers["X-Request-ID"] == "lb-7f3a.91"
    _, headers, _ = server.get("/healthz", **{"X-Request-ID": "bad id <script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])


def test_json_logs_one_line_per_4xx_at_info_with_the_request_id(server: Server) -> None:
    request_id = f"test-{uuid.uuid4().hex}"
    status, _, _ = server.get(
        "/api/connectors/status/not-a-uuid",
        Authorization=f"Bearer {_token(service_role=True)}",
        **{"X-Request-ID": request_id},
    )
    assert status == 400
    deadline = time.monotonic() + 10
    while request_id not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    mine = [r for r in records if r.get("request_id") == request_id]
    assert len(mine) == 1, mine
    assert mine[0]["level"] == "INFO" and "400 invalid_user_id" in mine[0]["message"]
    assert {"time", "level", "logger", "message"} <= set(mine[0])


def test_admin_login_works_behind_a_tls_proxy(server: Server) -> None:
    """The proxy terminates TLS and says so in X-Forwarded-Proto; the browser's Origin is the
    public https one. Without SECURE_PROXY_SSL_HEADER this was 403 CSRF verification failed."""
    _manage(server, "shell", "-v", "0", "-c", _CREATE_ADMIN)
    proxy = {"Host": "connectors.example.com", "X-Forwarded-Proto": "https"}
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/admin/login/", headers=proxy)
        page = conn.getresponse()
        html = page.read().decode()
        cookie = page.getheader("Set-Cookie", "")
        csrf_cookie = re.search(r"csrftoken=([^;]+)", cookie)
        csrf_field = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        assert page.status == 200 and csrf_cookie and csrf_field, html[:500]
        form = (
            f"csrfmiddlewaretoken={csrf_field.group(1)}&username={ADMIN_USER}"
            f"&password={ADMIN_PASSWORD}&next=/admin/"
        )
        conn.request(
            "POST",
            "/admin/login/",
            body=form,
            headers={
                **proxy,
                "Origin": "https://connectors.example.com",
                "Referer": "https://connectors.example.com/admin/login/",
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={csrf_cookie.group(1)}",
            },
        )
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 302, body[:500]
        assert response.getheader("Location") == "/admin/"
    finally:
        conn.close()


# --- /metrics --------------------------------------------------------------------------------
def _scrape(server: Server, token: str = SECRETS["METRICS_TOKEN"]) -> dict[str, float]:
    status, _, body = server.get("/metrics", Authorization=f"Bearer {token}")
    assert status == 200, body[:300]
    samples: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


HITS = 'connectors_cache_reads_total{outcome="hit"}'


def test_metrics_need_the_metrics_token_or_a_service_role_token(server: Server) -> None:
    assert server.get("/metrics")[0] == 401
    user = str(uuid.uuid4())
    assert server.get("/metrics", Authorization=f"Bearer {_token(user_id=user)}")[0] == 403
    assert server.get("/metrics", Authorization="Bearer " + "m" * 48)[0] == 401
    assert "connectors_outbox_pending" in _scrape(server, _token(service_role=True))
    # Loopback is not a credential: every request here comes from 127.0.0.1.


def test_a_hit_moves_the_hit_counter_and_every_worker_is_counted(server: Server) -> None:
    user = str(uuid.uuid4())
    auth = {"Authorization": f"Bearer {_token(user_id=user)}"}
    assert server.get(f"/api/connectors/status/{user}", **auth)[0] == 200  # the miss fills
    before = _scrape(server).get(HITS, 0.0)
    hits = 0
    # A new connection per request, until both workers have served hits (bounded).
    while (hits < 200 and len(_workers_with_hits(server.metrics_dir)) < 2) or hits < 20:
        status, _, body = server.get(f"/api/connectors/status/{user}", **auth)
        assert status == 200 and b'"cached":true' in body
        hits += 1
    workers = _workers_with_hits(server.metrics_dir)
    assert len(workers) == 2, f"only {workers} served {hits} hits"
    after = _scrape(server)
    # Whichever worker answered the scrape, it reports every worker's hits.
    assert after[HITS] - before == hits
    assert max(workers.values()) < after[HITS]
    latency = (
        'connectors_http_request_duration_seconds_count{cache="hit",method="GET",'
        'route="platform-status",status="200"}'
    )
    assert after[latency] >= hits


def _workers_with_hits(directory: Path) -> dict[int, float]:
    found: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(key)
            if sample == "connectors_cache_reads_total" and labels == {"outcome": "hit"} and value:
                found[int(path.stem.split("_")[1])] = value
    return found


# --- The browser -----------------------------------------------------------------------------
_CREATE_ADMIN = f"""
from django.contrib.auth.models import User
if not User.objects.filter(username={ADMIN_USER!r}).exists():
    User.objects.create_superuser({ADMIN_USER!r}, "ops@example.com", {ADMIN_PASSWORD!r})
"""
_SEED = """
from connectors.management.commands.seed_demo import seed
seed(users=3)
"""
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "needs Debian's chromium and chromium-driver (apt-get install -y ...)"
        if os.environ.get("REQUIRE_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never tries to download one.
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield session
    finally:
        session.quit()


def test_the_admin_and_the_api_docs_work_in_a_browser(server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    _manage(server, "shell", "-v", "0", "-c", _CREATE_ADMIN + _SEED)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 20)

    browser.get(f"{server.url}/admin/login/?next=/admin/connectors/platformconnection/")
    browser.find_element(By.NAME, "username").send_keys(ADMIN_USER)
    browser.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(ready.presence_of_element_located((By.ID, "result_list")))

    # Styled: every stylesheet loads, and the header has the admin's colours.
    sheets = [
        e.get_attribute("href")
        for e in browser.find_elements(By.CSS_SELECTOR, "link[rel=stylesheet]")
    ]
    assert any("/static/admin/css/base." in s for s in sheets), sheets
    for sheet in sheets:
        with urllib.request.urlopen(sheet, timeout=10) as response:
            assert response.status == 200, sheet
    header = browser.execute_script(
        "return getComputedStyle(document.getElementById('header')).backgroundColor"
    )
    assert header not in ("rgba(0, 0, 0, 0)", "transparent"), header

    # At 1280 px a user id is one line and the last column is on screen.
    lines = browser.execute_script(
        "const cell = document.querySelector('#result_list .field-user_id');"
        "const range = document.createRange(); range.selectNodeContents(cell);"
        "return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;"
    )
    assert lines == 1
    right = browser.execute_script(
        "return document.querySelector('#result_list th.column-updated_at_short')"
        ".getBoundingClientRect().right <= window.innerWidth;"
    )
    assert right, "the Updated at column is off screen at 1280 px"

    # "Select all" is JavaScript: it works only if the admin's scripts loaded.
    browser.find_element(By.ID, "action-toggle").click()
    boxes = browser.find_elements(By.CSS_SELECTOR, "input.action-select")
    assert len(boxes) >= 9 and all(box.is_selected() for box in boxes)
    Select(browser.find_element(By.NAME, "action")).select_by_value("invalidate_cache")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    message = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".messagelist li")))
    assert message.text == "Invalidated the cache of 3 users."
    browser.save_screenshot(str(SCREENSHOTS / "admin-changelist.png"))

    browser.get(f"{server.url}/admin/connectors/platformconnection/?q=7f9c24e8")
    warning = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".messagelist li")))
    assert "Search needs a full user id" in warning.text

    # Swagger UI: its JavaScript (a static file) renders one block per operation.
    _, _, schema = server.get("/api/schema/?format=json")
    paths = json.loads(schema)["paths"]
    operations = sum(
        1 for item in paths.values() for method in item if method in {"get", "post", "delete"}
    )
    browser.get(f"{server.url}/api/docs/")
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    shown = len(browser.find_elements(By.CSS_SELECTOR, ".opblock"))
    assert shown == operations >= 8
    browser.save_screenshot(str(SCREENSHOTS / "swagger.png"))
