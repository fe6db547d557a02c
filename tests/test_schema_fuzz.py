"""The OpenAPI schema, its offline docs, and schemathesis against a live server.

A real `manage.py runserver` on a free port (its own SQLite database, this run's Redis under
its own prefix) is fuzzed from /api/schema/ with a service-role token and with a user token:
no response may be a 5xx, and every response must match the schema (status code, content
type, headers, body). The server's own access log is the ground truth for the figures: every
request it answered, by status. FUZZ_EXAMPLES (default 10 per operation) bounds the run;
`make fuzz` raises it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
from django.contrib.staticfiles import finders

from connectors.providers import PROVIDERS
from tests.support.procs import free_port, wait_http
from tests.test_settings import BASE_ENV

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')


@pytest.mark.django_db
def test_the_schema_is_served_and_lists_every_api_operation(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    operations = {
        op["operationId"]
        for path in schema["paths"].values()
        for op in path.values()
        if isinstance(op, dict)
    }
    assert operations == {
        "platform_status",
        "platform_status_warm",
        "connector_authorize",
        "connector_callback",
        "connector_disconnect",
        "connectors_reset",
        "extraction_job",
        "extraction_job_create",
        "extraction_jobs",
        "extraction_job_cancel",
        "cache_stats",
    }
    assert schema["components"]["securitySchemes"]["SupabaseAccessToken"]["scheme"] == "bearer"
    assert "/api/connectors/status/{user_id}" in schema["paths"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/docs/", "/api/docs/redoc/"])
def test_the_docs_ui_is_served_without_any_cdn(client, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert "drf_spectacular_sidecar" in html
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs", "googleapis", "https://"):
        assert cdn not in html, cdn
    for asset in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
        assert finders.find(asset.split("?")[0]), asset  # shipped by the sidecar package


# --- Live fuzzing ---------------------------------------------------------------------------------
class LiveServer:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "server.log"
        prefix = f"connectors-fuzz-{uuid.uuid4().hex[:8]}"
        redis_url = os.environ.get("REDIS_URL", "")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))},
            **BASE_ENV,
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": f"sqlite:///{tmp / 'fuzz.sqlite3'}",
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": prefix,
            "LOG_LEVEL": "warning",
            # Every provider configured (an unconfigured one is a documented 503, which
            # schemathesis' not_a_server_error would count), token endpoints down.
            **{
                f"OAUTH_{name.upper()}_{field}": value
                for name in PROVIDERS
                for field, value in (
                    ("CLIENT_ID", f"fuzz-{name}"),
                    ("CLIENT_SECRET", "fuzz-secret"),
                    ("TOKEN_URL", "http://127.0.0.1:9/token"),
                )
            },
            "OAUTH_HTTP_TIMEOUT": "0.5",
            # The fuzzer must find bugs, not the rate limits (tests/test_throttling.py has those).
            "THROTTLE_USER_RATE": "100000/min",
            "THROTTLE_IP_RATE": "100000/min",
            "THROTTLE_OAUTH_USER_RATE": "100000/min",
            "THROTTLE_OAUTH_IP_RATE": "100000/min",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str) -> None:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def start(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runserver", "--noreload", "--insecure",
                 f"127.0.0.1:{self.port}"],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_http(f"{self.url}/healthz", proc=self.process)
        except RuntimeError as e:
            self.process.kill()  # never left running after the test gave up on it
            self.process.wait(10)
            raise RuntimeError(f"runserver: {e}: {self.log.read_text()[-2000:]}") from e

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.env["REDIS_URL"]:
            self.manage("clear_cache")  # SCAN by this server's prefix, never FLUSHDB

    def statuses(self) -> Counter[int]:
        counts: Counter[int] = Counter()
        for match in ACCESS_LINE.finditer(self.log.read_text(errors="replace")):
            if match["path"].startswith("/api/") and not match["path"].startswith("/api/schema"):
                counts[int(match["status"])] += 1
        return counts


@pytest.fixture
def fuzz_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path)
    server.start()
    yield server
    server.stop()


def _token(claims: dict[str, object]) -> str:
    now = int(time.time())
    return jwt.encode(
        {**claims, "iat": now, "exp": now + 3600}, BASE_ENV["SUPABASE_JWT_SECRET"], "HS256"
    )


def start_schemathesis(
    server: LiveServer, token: str, tmp: Path, examples: int
) -> subprocess.Popen[str]:
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert binary, "schemathesis is not installed (pip install -e '.[dev]')"
    report = tmp / f"report-{uuid.uuid4().hex[:6]}"
    return subprocess.Popen(
        [
            binary, "run", f"{server.url}/api/schema/",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_headers_conformance,response_schema_conformance",
            "--max-examples", str(examples),
            "--phases", "examples,coverage,fuzzing",
            "--workers", os.environ.get("FUZZ_WORKERS", "2"),
            "--seed", "20261127",
            "--generation-database", "none",
            "--request-timeout", "10",
            "--header", f"Authorization: Bearer {token}",
            "--report", "junit", "--report-dir", str(report),
            "--no-color",
        ],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def first_schema_fetches_at_once(server: LiveServer, count: int = 8) -> list[int]:
    """A fresh process's first schema requests, all at once (they used to race: see
    connectors.api.schema.SchemaView)."""
    barrier = threading.Barrier(count)

    def fetch() -> int:
        barrier.wait()
        try:
            with urllib.request.urlopen(f"{server.url}/api/schema/", timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: fetch(), range(count)))


def test_fuzzing_the_live_api_finds_no_5xx_and_no_schema_violation(fuzz_server, tmp_path):
    started = time.monotonic()
    assert first_schema_fetches_at_once(fuzz_server) == [200] * 8
    user = str(uuid.uuid4())
    tokens = {
        "service role": _token({"iss": "supabase", "role": "service_role"}),
        "user": _token(
            {"iss": "supabase", "aud": "authenticated", "role": "authenticated", "sub": user}
        ),
    }
    # Both identities at once: the server is threaded, and the run stays well under a minute.
    runs = {
        name: start_schemathesis(fuzz_server, token, tmp_path, EXAMPLES)
        for name, token in tokens.items()
    }
    for name, run in runs.items():
        output, _ = run.communicate(timeout=900)
        assert run.returncode == 0, f"schemathesis ({name}):\n{output[-8000:]}"
        summary = [line.strip() for line in output.splitlines() if "passed" in line]
        print(f"schemathesis ({name}): {' | '.join(summary[-2:])}")
    statuses = fuzz_server.statuses()
    total, server_errors = sum(statuses.values()), sum(c for s, c in statuses.items() if s >= 500)
    print(
        f"fuzz: {total} API requests in {time.monotonic() - started:.1f} s, "
        f"statuses {dict(sorted(statuses.items()))}, 5xx: {server_errors}"
    )
    assert total >= 8 * EXAMPLES
    assert server_errors == 0
