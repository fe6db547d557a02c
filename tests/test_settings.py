"""Bad configuration stops start-up with a message that says how to fix it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE_ENV = {
    "DJANGO_SECRET_KEY": "s" * 50,
    "SUPABASE_JWT_SECRET": "j" * 40,
    "TOKEN_ENCRYPTION_KEY": "l9tpR1P3hU6mZSXWbrmQOQxfSzOg0tx2dq8EHUaSShk=",
}
PROBE = (
    "import json, connectors_site.settings as s; "
    "print(json.dumps({'db': s.DATABASES['default'], 'cache': s.CACHES['default'], "
    "'hosts': s.ALLOWED_HOSTS}, default=str))"
)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh Python with this run's configuration variables dropped and `env` given."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("DJANGO_", "DATABASE_", "REDIS_", "UPSTASH_", "SUPABASE_", "TOKEN_", "CACHE_")
        )
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _load(**env: str) -> subprocess.CompletedProcess[str]:
    return _run(["-c", PROBE], {**BASE_ENV, **env})


def _config(**env: str) -> dict:
    result = _load(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG='maybe' is not a boolean"),
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL has scheme 'mysql'"),
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL has scheme 'http'"),
        ({"REDIS_SOCKET_TIMEOUT": "fast"}, "REDIS_SOCKET_TIMEOUT='fast' is not a number"),
        ({"CACHE_KEY_PREFIX": "a{b}"}, "CACHE_KEY_PREFIX='a{b}' must be non-empty without braces"),
        ({"SUPABASE_JWT_SECRET": "short"}, "SUPABASE_JWT_SECRET must be at least 32 characters"),
        ({"TOKEN_ENCRYPTION_KEY": "not-a-key"}, "TOKEN_ENCRYPTION_KEY must be comma-separated"),
        ({"DATABASE_POOLER": "x"}, "DATABASE_POOLER='x' is not one of"),
        (
            {"SUPABASE_URL": "abc.supabase.co"},
            "SUPABASE_URL='abc.supabase.co' must be an https:// URL: the project URL",
        ),
        (
            {"DJANGO_SECURE_SSL_REDIRECT": "1"},
            "DJANGO_SECURE_SSL_REDIRECT=1 needs DJANGO_SECURE_PROXY_SSL_HEADER",
        ),
        ({"DJANGO_SECURE_PROXY_SSL_HEADER": "X-Proto: https"}, "is not a header name"),
        ({"DJANGO_CSRF_TRUSTED_ORIGINS": "example.com"}, "list origins with their scheme"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN must be at least 32 characters"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY='0' must be at least 1"),
        ({"PORT": "70000"}, "PORT=70000 is not a TCP port"),
        (
            {"PROVIDER_API_BASE_GITHUB": "http://ghe.example.com/api/v3"},
            "PROVIDER_API_BASE_GITHUB='http://ghe.example.com/api/v3' must use https",
        ),
        ({"PROVIDER_API_BASE_REDDIT": "ftp://x"}, "PROVIDER_API_BASE_REDDIT='ftp://x' must be"),
        (
            {"EXTRACTION_STALE_SECONDS": "20", "EXTRACTION_HTTP_DEADLINE": "15"},
            "EXTRACTION_STALE_SECONDS=20 must exceed",
        ),
        (
            {
                "REDIS_URL": "rediss://:pw@cache.example.com:6379/0",
                "REDIS_TLS_CA_FILE": "/nonexistent.pem",
            },
            "REDIS_TLS_CA_FILE='/nonexistent.pem' cannot be loaded (No such file or directory): "
            "point it at a readable PEM file",
        ),
        (
            {"REDIS_URL": "redis://10.0.0.5:6379/0", "REDIS_SENTINELS": "10.0.0.1:26379"},
            "With REDIS_SENTINELS set, REDIS_URL names the Sentinel service",
        ),
        (
            {"REDIS_URL": "redis://mymaster/0", "REDIS_SENTINELS": "10.0.0.1"},
            "REDIS_SENTINELS has '10.0.0.1': list host:port pairs",
        ),
        (
            {"REDIS_URL": "redis://10.0.0.5:7000/3", "REDIS_CLUSTER": "1"},
            "Redis Cluster has only database 0",
        ),
        (
            {"REDIS_URL": "redis://m/0", "REDIS_CLUSTER": "1", "REDIS_SENTINELS": "h:1"},
            "Set REDIS_SENTINELS or REDIS_CLUSTER=1, not both",
        ),
        (
            {"DATABASE_URL": "postgres://u@h/db", "LISTEN_DATABASE_URL": "mysql://u@h/db"},
            "LISTEN_DATABASE_URL has scheme 'mysql'",
        ),
    ],
)
def test_bad_values_fail_with_improperly_configured(env, message):
    result = _load(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _run(list(args), {"REDIS_URL": "redis://127.0.0.1:6379/8", **env})


BAD = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "",
    "TOKEN_ENCRYPTION_KEY": "not-a-key",
    "CACHE_LEASE_MS": "soon",
    "LOG_FORMAT": "xml",
}
EXPECTED = [
    "DJANGO_SECRET_KEY is not set",
    "Neither SUPABASE_URL nor SUPABASE_JWT_SECRET is set",
    "TOKEN_ENCRYPTION_KEY must be comma-separated Fernet keys",
    "CACHE_LEASE_MS='soon' is not a whole number",
    "LOG_FORMAT='xml' is not one of: plain, json",
]


@pytest.mark.parametrize(
    "command",
    [
        ["manage.py", "migrate"],
        ["manage.py", "serve"],
        ["manage.py", "listen_invalidations"],
        ["-c", "import connectors_site.wsgi"],
    ],
    ids=["migrate", "serve", "listen_invalidations", "wsgi"],
)
def test_every_configuration_error_is_one_line_all_at_once_without_traceback(command):
    result = _manage(*command, **BAD)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == len(EXPECTED), result.stderr
    assert all(line.startswith("Configuration error: ") for line in lines), lines
    for expected in EXPECTED:
        assert sum(expected in line for line in lines) == 1, (expected, lines)
    assert result.stdout == ""


def test_no_configuration_means_sqlite_and_no_cache_and_importing_settings_prints_nothing():
    result = _load(
        DJANGO_DEBUG="1", DJANGO_SECRET_KEY="", SUPABASE_JWT_SECRET="", TOKEN_ENCRYPTION_KEY=""
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["db"]["ENGINE"] == "django.db.backends.sqlite3"
    assert config["cache"]["BACKEND"].endswith("DummyCache")
    # Every tool that loads the settings (mypy, any management command) would print it.
    assert result.stderr == ""


def test_caching_off_is_one_system_check_warning_naming_the_fix():
    result = _run(["manage.py", "check"], {"DJANGO_DEBUG": "1"})
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count("connectors.W001") == 1
    assert "REDIS_URL=redis://" in output


def test_a_provider_added_to_the_registry_is_configured_from_the_environment(
    settings, monkeypatch, alice
):
    """No second list of provider names in settings: any registry entry reads its variables."""
    from connectors import providers
    from connectors_site.settings import oauth_clients

    mastodon = providers.Provider(
        "mastodon", "Mastodon", "https://m.example/authorize", "https://m.example/token", ("read",)
    )
    monkeypatch.setitem(providers.PROVIDERS, "mastodon", mastodon)
    settings.OAUTH_CLIENTS = oauth_clients(
        {"OAUTH_MASTODON_CLIENT_ID": "id", "OAUTH_MASTODON_CLIENT_SECRET": "secret"}, debug=False
    )
    response = alice.get("/api/connectors/mastodon/authorize")
    assert response.status_code == 200, response.content
    assert "client_id=id" in response.json()["data"]["authorization_url"]


def test_oauth_variables_of_an_unknown_provider_are_a_system_check_warning(settings):
    from django.core import checks

    settings.OAUTH_CLIENTS = {**settings.OAUTH_CLIENTS, "githib": {"client_id": "x"}}
    ids = [message.id for message in checks.run_checks()]
    assert "connectors.W002" in ids


def test_postgres_urls_pass_query_options_through_to_psycopg():
    config = _config(DATABASE_URL="postgres://u:p@db.example.com:5432/app?sslmode=require")
    assert config["db"]["ENGINE"] == "connectors_site.db.postgresql"
    assert config["db"]["OPTIONS"]["sslmode"] == "require"
    assert not config["db"].get("DISABLE_SERVER_SIDE_CURSORS")


@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": "postgresql://u:p@aws-0-eu.pooler.supabase.com:6543/postgres"},
        {"DATABASE_URL": "postgresql://u:p@host:5432/postgres", "DATABASE_POOLER": "transaction"},
    ],
)
def test_the_supabase_transaction_pooler_disables_server_side_cursors(env):
    assert _config(**env)["db"]["DISABLE_SERVER_SIDE_CURSORS"] is True


def test_upstash_tls_urls_configure_django_redis_with_verified_tls():
    config = _config(
        UPSTASH_REDIS_URL="rediss://default:pw@eu1.upstash.io:6379",
        REDIS_TLS_CA_FILE="/etc/ssl/certs/ca-certificates.crt",
        CACHE_KEY_PREFIX="prod-eu",
    )
    cache = config["cache"]
    assert cache["BACKEND"] == "django_redis.cache.RedisCache"
    assert cache["LOCATION"].startswith("rediss://")
    assert cache["KEY_PREFIX"] == "prod-eu"
    assert cache["OPTIONS"]["SERIALIZER"].endswith("TaggedJSONSerializer")
    assert cache["OPTIONS"]["IGNORE_EXCEPTIONS"] is True
    pool = cache["OPTIONS"]["CONNECTION_POOL_KWARGS"]
    assert pool["ssl_cert_reqs"] == "required"
    assert pool["ssl_ca_certs"] == "/etc/ssl/certs/ca-certificates.crt"


def test_redis_url_wins_over_upstash_redis_url():
    config = _config(
        REDIS_URL="redis://127.0.0.1:6379/3", UPSTASH_REDIS_URL="rediss://x@y.upstash.io:6379"
    )
    assert config["cache"]["LOCATION"] == "redis://127.0.0.1:6379/3"


def test_provider_api_bases_take_https_or_a_loopback_address():
    probe = "import json, connectors_site.settings as s; print(json.dumps(s.PROVIDER_API_BASES))"
    env = {
        **BASE_ENV,
        "PROVIDER_API_BASE_GITHUB": "https://ghe.example.com/api/v3/",
        "PROVIDER_API_BASE_SPOTIFY": "http://127.0.0.1:9000/spotify",
    }
    result = _run(["-c", probe], env)
    assert json.loads(result.stdout) == {
        "github": "https://ghe.example.com/api/v3",
        "spotify": "http://127.0.0.1:9000/spotify",
    }


def test_a_ca_file_that_is_not_a_pem_bundle_is_refused_at_start_up(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    result = _load(REDIS_URL="rediss://:pw@cache.example.com:6379/0", REDIS_TLS_CA_FILE=str(bogus))
    assert result.returncode != 0
    assert f"REDIS_TLS_CA_FILE={str(bogus)!r} cannot be loaded" in result.stderr


def test_sentinel_settings_go_through_django_redis_sentinel_client_with_the_url_credentials():
    cache = _config(
        REDIS_URL="redis://app:pw@mymaster/2",
        REDIS_SENTINELS="10.0.0.1:26379, 10.0.0.2:26379,[::1]:26380",
        REDIS_SENTINEL_PASSWORD="sentinel-pw",
    )["cache"]
    assert cache["LOCATION"] == "redis://app:pw@mymaster/2"  # service name, db, ACL user
    options = cache["OPTIONS"]
    assert options["CLIENT_CLASS"] == "django_redis.client.SentinelClient"
    assert options["CONNECTION_FACTORY"] == "connectors.cache.clients.SentinelFactory"
    assert options["SENTINELS"] == [["10.0.0.1", 26379], ["10.0.0.2", 26379], ["::1", 26380]]
    assert options["SENTINEL_KWARGS"]["password"] == "sentinel-pw"
    assert options["SERIALIZER"].endswith("TaggedJSONSerializer")


def test_sentinel_over_tls_verifies_both_the_sentinels_and_the_master():
    options = _config(
        REDIS_URL="rediss://app:pw@mymaster/0",
        REDIS_SENTINELS="10.0.0.1:26379",
        REDIS_TLS_CA_FILE="/etc/ssl/certs/ca-certificates.crt",
    )["cache"]["OPTIONS"]
    pool = options["CONNECTION_POOL_KWARGS"]
    assert pool["ssl_cert_reqs"] == "required"
    assert pool["ssl_ca_certs"] == "/etc/ssl/certs/ca-certificates.crt"
    # connectors.cache.clients.SentinelFactory picks the TLS connection class for rediss://.
    sentinel = options["SENTINEL_KWARGS"]
    assert sentinel["ssl"] is True and sentinel["ssl_cert_reqs"] == "required"
    assert sentinel["ssl_ca_certs"] == "/etc/ssl/certs/ca-certificates.crt"


def test_cluster_settings_use_our_cluster_client_and_wait_for_a_replica():
    config = _config(REDIS_URL="rediss://app:pw@node-1.cache.example.com:6379", REDIS_CLUSTER="1")
    options = config["cache"]["OPTIONS"]
    assert options["CLIENT_CLASS"] == "connectors.cache.clients.ClusterClient"
    assert options["CONNECTION_POOL_KWARGS"]["ssl_cert_reqs"] == "required"


def test_single_node_settings_are_unchanged_by_the_topology_options():
    options = _config(REDIS_URL="redis://127.0.0.1:6379/3")["cache"]["OPTIONS"]
    assert options["CLIENT_CLASS"] == "django_redis.client.DefaultClient"
    assert "CONNECTION_FACTORY" not in options and "SENTINELS" not in options
