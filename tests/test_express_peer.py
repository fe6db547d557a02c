"""The seed's own Express + ioredis stack (bench/peers/express-seed/), as the benchmark runs it:
on this test database, it answers every user the same document, byte for byte, as this service,
caches like the seed (SETEX 300 in Redis, read back on every hit), and refuses what we refuse.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
import redis
from django.conf import settings

from bench.peers import express
from connectors.auth import issue_token
from connectors.models import PlatformConnection
from tests.support.procs import the_tests_database_url
from tests.support.servers import JSONHandler, local_http_server
from tests.support.tokens import user_claims

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

STATUS = "/api/connectors/status/"


@pytest.fixture(scope="module")
def peer(django_db_setup: Any) -> Iterator[express.ExpressPeer]:
    """The peer on pytest-django's test database and this run's Redis, two workers."""
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.REDIS_URL:
        pytest.skip("needs Postgres and Redis")  # the markers already fail or skip the tests
    try:
        express.ensure_installed()
    except express.PeerError as e:
        if os.environ.get("REQUIRE_SERVICES", "") not in ("", "0"):
            pytest.fail(f"{e}\n(REQUIRE_SERVICES is set)")
        pytest.skip(str(e))
    prefix = f"express-test-{os.getpid()}-{uuid.uuid4().hex[:8]}:"
    running = express.ExpressPeer(
        database_url=the_tests_database_url(),
        redis_url=settings.REDIS_URL,
        key_prefix=prefix,
        jwt_secret=settings.SUPABASE_JWT_SECRET,
        workers=2,
    ).start()
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        yield running
    finally:
        running.stop()
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def peer_redis(peer: express.ExpressPeer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def _at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


@pytest.fixture
def varied_users(make_connection: Any) -> list[str]:
    """Users whose documents exercise every formatting rule of platform_status_from_db."""
    alice, bob, carol, dave = (str(uuid.uuid4()) for _ in range(4))
    # alice: microseconds 0 (Python prints no fraction), sub-millisecond microseconds (a JS
    # Date would lose them), inactive rows, an active row that is not "connected", nulls.
    make_connection(
        alice,
        "github",
        connected_at=_at(2026, 11, 3, 4, 5, 6),
        last_sync_at=_at(2026, 11, 30, 23, 59, 59, 500),
        last_sync_status="success",
    )
    make_connection(alice, "spotify", is_active=False, status="disconnected")
    make_connection(alice, "discord", is_active=False, status="connected")
    make_connection(alice, "youtube", status="expired", last_sync_status="failed")
    make_connection(
        alice, "reddit", connected_at=None, last_sync_at=None, last_sync_status="running"
    )
    # bob: no rows at all, every provider "not_connected".
    # carol: a row for every registered provider and one for a provider no longer registered.
    micros = [0, 1, 1000, 123456, 999999, 500000, 10]
    for i, provider in enumerate(["google_calendar", "spotify", "github", "youtube", "discord"]):
        make_connection(
            carol,
            provider,
            connected_at=_at(2020 + i, 1 + i, 2 + i, 3, 4, 5, micros[i]),
            last_sync_at=_at(1969, 12, 31, 23, 59, 59, micros[i + 1]),
            last_sync_status=["pending", "running", "success", "failed", "success"][i],
        )
    make_connection(carol, "linkedin", connected_at=_at(1, 1, 1, 0, 0, 0, 1))
    make_connection(carol, "reddit", connected_at=_at(9999, 12, 31, 23, 59, 59, 999999))
    make_connection(carol, "myspace")  # a provider since removed from the registry
    # dave: versions well past 1, after repeated updates (assigned by the database's trigger).
    row = make_connection(dave, "linkedin")
    for status in ("expired", "error", "connected"):
        PlatformConnection.objects.filter(pk=row.pk).update(status=status)
    return [alice, bob, carol, dave]


def _token_for(user_id: str) -> str:
    return issue_token(user_id=user_id.lower())


@pytest.mark.django_db(transaction=True)
def test_the_peer_answers_every_user_the_same_bytes_as_the_service(
    peer: express.ExpressPeer, live_server: Any, varied_users: list[str]
):
    # An upper-case id in the URL is the same user to both.
    users = [*varied_users, varied_users[0].upper()]
    # First pass: both miss and read the database; second: both answer from Redis.
    assert express.compare_documents(peer.base_url, live_server.url, users, _token_for) == []
    assert express.compare_documents(peer.base_url, live_server.url, users, _token_for) == []

    # Service-role tokens see the same.
    service = issue_token(user_id=None, service_role=True)
    assert express.compare_documents(peer.base_url, live_server.url, users, lambda _: service) == []


@pytest.mark.django_db(transaction=True)
def test_compare_documents_reports_a_peer_that_serves_an_older_document(
    peer: express.ExpressPeer, live_server: Any, varied_users: list[str]
):
    alice = varied_users[0]
    assert express.compare_documents(peer.base_url, live_server.url, varied_users, _token_for) == []
    # This service invalidates on commit; the peer has no write path and keeps its entry.
    PlatformConnection.objects.filter(user_id=alice, provider="github").update(
        last_sync_status="failed"
    )
    mismatches = express.compare_documents(peer.base_url, live_server.url, varied_users, _token_for)
    assert [(m.user_id, m.kind) for m in mismatches] == [(alice, "document")]
    assert "platforms.github" in mismatches[0].detail


@pytest.mark.django_db(transaction=True)
def test_the_peer_sets_the_seeds_key_for_300_s_and_reads_it_back_on_every_hit(
    peer: express.ExpressPeer, peer_redis: redis.Redis, make_connection: Any
):
    user = str(uuid.uuid4())
    make_connection(user, "github")
    token = _token_for(user)
    with express.Client() as client:
        answer = client.status(peer.base_url, user, token)
        first = json.loads(answer.body)
        assert (answer.status, first["success"], first["cached"]) == (200, True, False)

        key = f"{peer.key_prefix}platform_status:{user}"
        assert 290 <= peer_redis.ttl(key) <= 300
        stored = peer_redis.get(key)
        assert stored is not None
        assert json.loads(stored) == first["data"]

        second = json.loads(client.status(peer.base_url, user, token).body)
        assert second == {**first, "cached": True}

        # A hit is whatever Redis holds now (no copy kept in the process).
        changed = {**first["data"], "user_id": "changed in redis"}
        peer_redis.set(key, json.dumps(changed), ex=300)
        third = json.loads(client.status(peer.base_url, user, token).body)
        assert third == {"success": True, "data": changed, "cached": True}


def _signed(claims: dict[str, Any], *, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or settings.SUPABASE_JWT_SECRET, algorithm=algorithm)


@pytest.mark.django_db(transaction=True)
def test_the_peer_refuses_what_the_service_refuses(
    peer: express.ExpressPeer, live_server: Any, make_connection: Any
):
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    make_connection(alice, "github")
    now = int(time.time())
    # (what, Authorization header, user in the URL, expected status)
    cases: list[tuple[str, str | None, str, int]] = [
        ("no token", None, alice, 401),
        ("garbage", "Bearer not.a.jwt", alice, 401),
        ("not bearer", "Basic dXNlcjpwYXNz", alice, 401),
        ("three parts", "Bearer a b", alice, 401),
        ("oversized", "Bearer " + "a" * 9000, alice, 401),
        ("other secret", "Bearer " + _signed(user_claims(alice), key="x" * 40), alice, 401),
        ("HS384", "Bearer " + _signed(user_claims(alice), algorithm="HS384"), alice, 401),
        ("alg none", "Bearer " + jwt.encode(user_claims(alice), "", algorithm="none"), alice, 401),
        ("expired", "Bearer " + _signed(user_claims(alice, exp=now - 3600)), alice, 401),
        ("no exp", "Bearer " + _signed(user_claims(alice, exp=None)), alice, 401),
        ("nbf ahead", "Bearer " + _signed(user_claims(alice, nbf=now + 3600)), alice, 401),
        ("iat ahead", "Bearer " + _signed(user_claims(alice, iat=now + 3600)), alice, 401),
        ("anon role", "Bearer " + _signed(user_claims(alice, role="anon")), alice, 401),
        ("no role", "Bearer " + _signed(user_claims(alice, role=None)), alice, 401),
        ("other aud", "Bearer " + _signed(user_claims(alice, aud="someone-else")), alice, 401),
        ("sub not uuid", "Bearer " + _signed(user_claims(alice, sub="not-a-uuid")), alice, 401),
        ("no sub", "Bearer " + _signed(user_claims(alice, sub=None)), alice, 401),
        ("someone else", "Bearer " + _token_for(bob), alice, 403),
        ("own user", "Bearer " + _token_for(alice), alice, 200),
        ("bad user id", "Bearer " + _token_for(alice), "not-a-uuid", 400),
        ("service role", "Bearer " + issue_token(user_id=None, service_role=True), bob, 200),
    ]
    with express.Client() as client:
        for what, header, user, expected in cases:
            answers = []
            for base in (peer.base_url, live_server.url):
                answer = client.get(base, STATUS + user, authorization=header)
                body = json.loads(answer.body)
                code = body["error"]["code"] if answer.status != 200 else None
                answers.append((answer.status, code, answer.headers.get("www-authenticate")))
            peer_answer, our_answer = answers
            assert peer_answer == our_answer, what
            assert peer_answer[0] == expected, what


def test_compare_documents_tells_equal_documents_from_equal_bytes():
    """Same JSON in another key order is a "bytes" mismatch; other values a "document" one."""
    user = str(uuid.uuid4())
    bodies = {
        "ours": b'{"success":true,"data":{"user_id":"%s","platforms":{}},"cached":true}',
        "reordered": b'{"success":true,"data":{"platforms":{},"user_id":"%s"},"cached":false}',
        "spaced": b'{"success": true, "data": {"user_id": "%s", "platforms": {}}, "cached": true}',
        "other": b'{"success":true,"data":{"user_id":"%s","platforms":{"x":1}},"cached":true}',
        "failure": b'{"success":false,"error":{"code":"x","message":"y"}}',
    }

    class Handler(JSONHandler):
        def do_GET(self) -> None:
            name = self.path.split("/")[1]
            body = bodies[name] % user.encode() if b"%s" in bodies[name] else bodies[name]
            self.send_json(200, body)

    with local_http_server(Handler) as base:

        def kinds(peer_name: str) -> list[str]:
            found = express.compare_documents(
                f"{base}/{peer_name}", f"{base}/ours", [user], lambda _: "token"
            )
            return [m.kind for m in found]

        assert kinds("ours") == []
        assert kinds("reordered") == ["bytes"]
        assert kinds("spaced") == ["bytes"]
        assert kinds("other") == ["document"]
        assert kinds("failure") == ["envelope"]
