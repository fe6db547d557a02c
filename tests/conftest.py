from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from connectors import cache
from connectors.api import throttling
from connectors.auth import issue_token
from connectors.models import PlatformConnection

USES_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
USES_REDIS = cache.enabled()
# CI sets this: a test that needs a real service must then fail rather than be skipped.
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES", "") not in ("", "0")


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing = []
    if item.get_closest_marker("postgres") and not USES_POSTGRES:
        missing.append("Postgres (set DATABASE_URL=postgres://...)")
    if item.get_closest_marker("redis") and not USES_REDIS:
        missing.append("Redis (set REDIS_URL=redis://...)")
    if missing:
        message = "needs " + " and ".join(missing)
        if REQUIRE_SERVICES:
            pytest.fail(f"{message}, but REQUIRE_SERVICES is set")
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _isolated_cache() -> Iterator[None]:
    """Every test starts and ends with no keys under this run's prefix (never FLUSHDB), and
    with a closed breaker."""
    cache.reset_breakers()
    cache.set_undelivered(False)
    cache.clear_all()
    throttling.reset_local_counters()  # Redis counters went with clear_all()
    yield
    cache.reset_breakers()
    cache.set_undelivered(False)
    cache.clear_all()


# --- Users and clients -------------------------------------------------------------------
@pytest.fixture
def alice_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def bob_id() -> str:
    return str(uuid.uuid4())


def client_for(user_id: str | None, *, service_role: bool = False) -> APIClient:
    client = APIClient()
    if user_id or service_role:
        token = issue_token(user_id=user_id, service_role=service_role)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def alice(alice_id: str) -> APIClient:
    return client_for(alice_id)


@pytest.fixture
def bob(bob_id: str) -> APIClient:
    return client_for(bob_id)


@pytest.fixture
def service() -> APIClient:
    return client_for(None, service_role=True)


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def make_connection() -> Callable[..., PlatformConnection]:
    def make(user_id: str, provider: str = "github", **fields: Any) -> PlatformConnection:
        defaults: dict[str, Any] = {
            "is_active": True,
            "status": "connected",
            "connected_at": timezone.now(),
            "access_token": f"access-{uuid.uuid4().hex}",
            "refresh_token": f"refresh-{uuid.uuid4().hex}",
            "scopes": ["read:user"],
        }
        defaults.update(fields)
        return PlatformConnection.objects.create(user_id=user_id, provider=provider, **defaults)

    return make


def status_of(client: APIClient, user_id: str) -> dict[str, Any]:
    response = client.get(f"/api/connectors/status/{user_id}")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


# --- Real HTTP servers on 127.0.0.1 standing in for the internet -----------------------------
class JSONHandler(BaseHTTPRequestHandler):
    """Base for the local stand-ins (OAuth provider, Supabase Auth): JSON answers, no logs."""

    def send_json(self, status: int, body: Any) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def local_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free port for the duration; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval: shutdown() waits up to one interval, at every test's teardown.
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- A real OAuth provider on 127.0.0.1 ------------------------------------------------------
@dataclass
class FakeProvider:
    """A local token endpoint. `reply` decides what the next exchange gets back."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply: tuple[int, Any] = (200, {})

    def answer(self, status: int, body: Any) -> None:
        self.reply = (status, body)

    def succeed(self, **extra: Any) -> dict[str, Any]:
        tokens = {
            "access_token": f"prov-access-{uuid.uuid4().hex}",
            "refresh_token": f"prov-refresh-{uuid.uuid4().hex}",
            "expires_in": 3600,
            "scope": "read:user",
            "token_type": "bearer",
            **extra,
        }
        self.answer(200, tokens)
        return tokens


@pytest.fixture
def oauth_provider(settings: Any) -> Iterator[FakeProvider]:
    provider = FakeProvider(url="")

    class Handler(JSONHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            form = parse_qs(self.rfile.read(length).decode())
            provider.requests.append(
                {
                    "form": {k: v[0] for k, v in form.items()},
                    "headers": dict(self.headers),
                }
            )
            self.send_json(*provider.reply)

    with local_http_server(Handler) as base:
        provider.url = f"{base}/token"
        clients = dict(settings.OAUTH_CLIENTS)
        for name in ("github", "reddit"):
            clients[name] = {
                "client_id": f"{name}-client",
                "client_secret": f"{name}-secret",
                "token_url": provider.url,
                "authorize_url": f"{base}/authorize",
            }
        settings.OAUTH_CLIENTS = clients
        yield provider


# --- A throwaway redis-server for fault tests (never the shared one) ---------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisProcess:
    port: int
    persist_dir: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--loglevel",
            "warning",
        ]
        if self.persist_dir:
            # Every write synced, so a SIGKILL loses nothing: "restarted with its data".
            args += ["--appendonly", "yes", "--appendfsync", "always", "--dir", self.persist_dir]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.resume()
            self.process.kill()
            self.process.wait(5)

    def pause(self) -> None:
        assert self.process
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process
        self.process.send_signal(signal.SIGCONT)


def _use_redis(settings: Any, server: RedisProcess) -> None:
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = server.url
    caches["default"]["OPTIONS"]["SOCKET_TIMEOUT"] = 0.2
    caches["default"]["OPTIONS"]["SOCKET_CONNECT_TIMEOUT"] = 0.2
    settings.CACHES = caches


@pytest.fixture
def own_redis(settings: Any) -> Iterator[RedisProcess]:
    """A private redis-server, and the app's cache pointed at it for this test."""
    server = RedisProcess(port=free_port())
    server.start()
    _use_redis(settings, server)
    yield server
    server.kill()


@pytest.fixture
def own_persistent_redis(settings: Any, tmp_path: Any) -> Iterator[RedisProcess]:
    """Like own_redis, but it keeps its data (AOF) across a kill and restart."""
    server = RedisProcess(port=free_port(), persist_dir=str(tmp_path))
    server.start()
    _use_redis(settings, server)
    yield server
    server.kill()
