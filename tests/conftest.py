"""Fixtures only: users and their API clients, rows, a local OAuth provider, private Redis.

The helpers behind them (processes, local servers, clients) are in tests/support/.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from connectors import cache
from connectors.api import throttling
from connectors.models import PlatformConnection
from tests.support.clients import client_for, use_cache
from tests.support.procs import RedisServer
from tests.support.servers import FakeProvider

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


@pytest.fixture(autouse=True, scope="session")
def _static_files_from_the_apps() -> Iterator[None]:
    """In-process tests read static files from the apps (no collectstatic, no manifest); the
    hashed, compressed production set is tested against a real server (test_production.py)."""
    with override_settings(
        STORAGES={
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
        STATIC_ROOT=None,
        WHITENOISE_USE_FINDERS=True,
    ):
        yield


# The API's tests run against both ways a status read is answered: the fast path in front of DRF
# (connectors/api/fastpath.py) and the DRF viewset alone. Elsewhere the default (fast) applies:
# the outage and topology modules (Redis/Postgres down, Sentinel, Cluster) test the cache layer
# underneath, which both paths share, and while a breaker is open the fast path hands every read
# to DRF anyway; running them twice cost a minute of the suite's five.
BOTH_API_PATHS = frozenset(
    {
        "test_api_status",
        "test_auth",
        "test_authorization_matrix",
        "test_entry_authenticity",
        "test_hostile_input",
        "test_jwks",
        "test_observability",
        "test_planted_keys",
        "test_redis_access",
        "test_secrets",
        "test_throttling",
        "test_token_rotation",
        "test_write_paths",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rpartition(".")[2] in BOTH_API_PATHS:
        metafunc.parametrize("api_path", ["fast", "drf"], indirect=True)


@pytest.fixture(autouse=True)
def api_path(request: pytest.FixtureRequest, settings: Any) -> str:
    path: str = getattr(request, "param", "fast")
    settings.API_FAST_PATH = path == "fast"
    return path


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


@pytest.fixture
def oauth_provider(settings: Any) -> Iterator[FakeProvider]:
    """A local OAuth token endpoint that github and reddit exchange codes with."""
    with FakeProvider.serving() as provider:
        clients = dict(settings.OAUTH_CLIENTS)
        for name in ("github", "reddit"):
            clients[name] = provider.client_settings(name)
        settings.OAUTH_CLIENTS = clients
        yield provider


# --- A throwaway redis-server for fault tests (never the shared one) ---------------------------
@pytest.fixture
def own_redis(settings: Any) -> Iterator[RedisServer]:
    """A private redis-server, and the app's cache pointed at it for this test."""
    server = RedisServer()
    server.start()
    use_cache(settings, server.url)
    yield server
    server.kill()


@pytest.fixture
def own_persistent_redis(settings: Any, tmp_path: Path) -> Iterator[RedisServer]:
    """Like own_redis, but it keeps its data (AOF) across a kill and restart."""
    server = RedisServer(workdir=tmp_path, persist=True)
    server.start()
    use_cache(settings, server.url)
    yield server
    server.kill()
