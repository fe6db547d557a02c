"""Redis access as deployed: a password, an ACL user, and TLS with certificate verification.

Each test starts its own redis-server (7.0.15 here, built with TLS) on a free port and points
the app's cache at it; a server that refuses us (wrong password, wrong CA, a user without
access to our keys) must cost nothing but the cache: every read falls back to the database.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from connectors import cache
from tests.support.clients import use_cache
from tests.support.procs import RedisServer, free_port
from tests.support.tls import make_ca, server_certificate
from tests.test_settings import BASE_ENV, _config

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

PASSWORD = "s3cret-pass-" + uuid.uuid4().hex[:8]


# --- Processes ----------------------------------------------------------------------------------
@pytest.fixture
def start_redis() -> Iterator[Callable[..., int]]:
    """Start redis-server with extra arguments; every one started is killed at teardown."""
    servers: list[RedisServer] = []

    def start(*args: str, port: int | None = None) -> int:
        server = RedisServer(port=port or free_port(), extra=args)
        servers.append(server)
        server.start()  # listening is enough: auth is what is under test
        return server.port

    yield start
    for server in servers:
        server.kill()


def cached_flags(client: Any, user_id: str) -> list[bool]:
    flags = []
    for _ in range(2):
        response = client.get(f"/api/connectors/status/{user_id}")
        assert response.status_code == 200, response.content
        flags.append(response.json()["cached"])
    return flags


# --- Password and ACL users ---------------------------------------------------------------------
def test_a_password_from_the_url_is_used(settings, start_redis, alice, alice_id):
    port = start_redis("--requirepass", PASSWORD)
    use_cache(settings, f"redis://:{PASSWORD}@127.0.0.1:{port}/0", timeout=0.5)
    assert cached_flags(alice, alice_id) == [False, True]


@pytest.mark.parametrize("auth", ["", ":wrong-password@"])
def test_a_wrong_or_missing_password_falls_back_to_the_database(
    settings, start_redis, alice, alice_id, auth
):
    port = start_redis("--requirepass", PASSWORD)
    use_cache(settings, f"redis://{auth}127.0.0.1:{port}/0", timeout=0.5)
    assert cached_flags(alice, alice_id) == [False, False]


def test_an_acl_user_limited_to_this_deployments_prefix_is_enough(
    settings, start_redis, alice, alice_id
):
    """ACL `~<CACHE_KEY_PREFIX>:*`: the service needs no key outside its own namespace."""
    prefix = django_settings.CACHE_KEY_PREFIX
    port = start_redis(
        "--user", "default", "off",
        "--user", "connectors", "on", f">{PASSWORD}", f"~{prefix}:*", "+@all", "-@dangerous",
        "+info", "+scan",
    )  # fmt: skip
    use_cache(settings, f"redis://connectors:{PASSWORD}@127.0.0.1:{port}/0", timeout=0.5)
    assert cached_flags(alice, alice_id) == [False, True]
    service = cache.maintenance_client()
    assert all(k.decode().startswith(f"{prefix}:") for k in service.scan_iter(match="*"))


@pytest.mark.parametrize(
    "acl",
    [
        ("~other-app:*", "+@all"),  # the right password, but none of our keys
        ("~*", "+@read"),  # read-only: cannot fill the cache
    ],
)
def test_an_acl_user_without_the_rights_falls_back_to_the_database(
    settings, start_redis, alice, alice_id, acl
):
    port = start_redis("--user", "default", "off", "--user", "app", "on", f">{PASSWORD}", *acl)
    use_cache(settings, f"redis://app:{PASSWORD}@127.0.0.1:{port}/0", timeout=0.5)
    assert cached_flags(alice, alice_id) == [False, False]


# --- TLS ------------------------------------------------------------------------------------------
@pytest.fixture
def tls(tmp_path: Path) -> dict[str, Path]:
    ca_key, ca_cert, ca_path = make_ca(tmp_path, "test-ca")
    _, _, other_ca_path = make_ca(tmp_path, "other-ca")
    server_certificate(tmp_path, ca_key, ca_cert, dns_names=("localhost",))
    return {
        "ca": ca_path,
        "other_ca": other_ca_path,
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
    }


def start_tls_redis(start_redis: Callable[..., int], tls: dict[str, Path]) -> int:
    port = free_port()
    return start_redis(
        "--port", "0", "--tls-port", str(port),
        "--tls-cert-file", str(tls["cert"]), "--tls-key-file", str(tls["key"]),
        "--tls-ca-cert-file", str(tls["ca"]), "--tls-auth-clients", "no",
        "--requirepass", PASSWORD,
        port=port,
    )  # fmt: skip


def test_rediss_with_the_custom_ca_works(settings, start_redis, tls, alice, alice_id):
    port = start_tls_redis(start_redis, tls)
    use_cache(
        settings,
        f"rediss://:{PASSWORD}@127.0.0.1:{port}/0",
        timeout=0.5,
        ssl_cert_reqs="required",
        ssl_ca_certs=str(tls["ca"]),
    )
    assert cached_flags(alice, alice_id) == [False, True]


@pytest.mark.parametrize("ca", ["other_ca", None])
def test_rediss_with_an_untrusted_certificate_fails_closed(
    settings, start_redis, tls, alice, alice_id, ca
):
    """A certificate the configured CA (or the system's store) did not sign is never talked to:
    the cache is off for these requests, which the database answers."""
    port = start_tls_redis(start_redis, tls)
    kwargs: dict[str, Any] = {"ssl_cert_reqs": "required"}
    if ca:
        kwargs["ssl_ca_certs"] = str(tls[ca])
    use_cache(settings, f"rediss://:{PASSWORD}@127.0.0.1:{port}/0", **kwargs, timeout=0.5)
    assert cached_flags(alice, alice_id) == [False, False]


def test_settings_turn_rediss_and_redis_tls_ca_file_into_a_verified_connection(start_redis, tls):
    """End to end from the environment: REDIS_URL=rediss://... + REDIS_TLS_CA_FILE in a fresh
    process, through connectors.cache, with the right CA and then the wrong one."""
    port = start_tls_redis(start_redis, tls)
    url = f"rediss://:{PASSWORD}@localhost:{port}/0"
    pool = _config(REDIS_URL=url, REDIS_TLS_CA_FILE=str(tls["ca"]))["cache"]["OPTIONS"][
        "CONNECTION_POOL_KWARGS"
    ]
    assert pool["ssl_cert_reqs"] == "required" and pool["ssl_ca_certs"] == str(tls["ca"])
    probe = (
        "import django; django.setup(); from connectors import cache; "
        "r = cache.redis_client(); r.set('tls-probe', 1, ex=5); print(r.get('tls-probe'))"
    )
    results = {}
    for ca in ("ca", "other_ca"):
        env = {
            **BASE_ENV,
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "connectors_site.settings",
            "REDIS_URL": url,
            "REDIS_TLS_CA_FILE": str(tls[ca]),
            "CACHE_KEY_PREFIX": f"connectors-tls-{uuid.uuid4().hex[:8]}",
        }
        done = subprocess.run(
            [sys.executable, "-c", probe],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )
        results[ca] = (done.returncode, done.stdout.strip(), done.stderr)
    assert results["ca"][:2] == (0, "b'1'"), results["ca"][2]
    assert results["other_ca"][0] != 0
    assert "CERTIFICATE_VERIFY_FAILED" in results["other_ca"][2]
