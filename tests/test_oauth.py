"""The OAuth flow against a real HTTP server on 127.0.0.1 standing in for the provider."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django import db
from django.db import connection
from django.utils import timezone

from connectors import oauth
from connectors.models import OAuthStateUse, PlatformConnection
from tests.support.clients import status_of
from tests.support.servers import JSONHandler, local_http_server
from tests.test_settings import _load

pytestmark = pytest.mark.django_db(transaction=True)


def _authorize(client, provider: str = "github") -> dict:
    response = client.get(f"/api/connectors/{provider}/authorize")
    assert response.status_code == 200, response.content
    return response.json()["data"]


def test_authorize_returns_the_providers_url_with_state_and_pkce(alice, oauth_provider):
    data = _authorize(alice)
    url = urlsplit(data["authorization_url"])
    query = parse_qs(url.query)
    assert url.path == "/authorize"
    assert query["client_id"] == ["github-client"]
    assert query["state"] == [data["state"]]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/oauth/callback"]


def test_callback_connects_and_stores_tokens_encrypted(alice, alice_id, oauth_provider):
    authorize = _authorize(alice)
    state = authorize["state"]
    challenge = parse_qs(urlsplit(authorize["authorization_url"]).query)["code_challenge"][0]
    tokens = oauth_provider.succeed()
    response = alice.post(
        "/api/connectors/callback",
        {"provider": "github", "code": "the-code", "state": state},
        format="json",
    )
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert data["provider"] == "github" and data["connected"] is True
    assert tokens["access_token"] not in response.content.decode()
    # What the provider received: the code, our client, and the PKCE verifier whose S256 is
    # the challenge the browser was sent to the provider with (RFC 7636 section 4.6).
    form = oauth_provider.requests[-1]["form"]
    assert form["code"] == "the-code" and form["client_secret"] == "github-secret"
    verified = (
        base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest())
        .rstrip(b"=")
        .decode()
    )
    assert verified == challenge
    row = PlatformConnection.objects.get(user_id=alice_id, provider="github")
    assert row.access_token == tokens["access_token"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, refresh_token FROM connectors_platformconnection WHERE id = %s",
            [row.pk],
        )
        stored = cursor.fetchone()
    assert tokens["access_token"] not in stored[0] and tokens["refresh_token"] not in stored[1]
    assert status_of(alice, alice_id)["data"]["platforms"]["github"]["connected"] is True


def test_reddit_authenticates_with_http_basic_and_no_pkce(alice, oauth_provider):
    state = _authorize(alice, "reddit")["state"]
    oauth_provider.succeed()
    response = alice.post(
        "/api/connectors/callback",
        {"provider": "reddit", "code": "c", "state": state},
        format="json",
    )
    assert response.status_code == 200
    request = oauth_provider.requests[-1]
    assert request["headers"]["Authorization"].startswith("Basic ")
    assert "client_secret" not in request["form"] and "code_verifier" not in request["form"]


def test_a_state_issued_to_another_user_is_refused(alice, bob, oauth_provider):
    state = _authorize(bob)["state"]
    oauth_provider.succeed()
    response = alice.post(
        "/api/connectors/callback",
        {"provider": "github", "code": "c", "state": state},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_state"
    assert oauth_provider.requests == []


def test_a_state_for_another_provider_is_refused(alice, oauth_provider):
    state = _authorize(alice, "reddit")["state"]
    response = alice.post(
        "/api/connectors/callback",
        {"provider": "github", "code": "c", "state": state},
        format="json",
    )
    assert response.json()["error"]["code"] == "invalid_state"


def test_a_forged_or_expired_state_is_refused(alice, alice_id, oauth_provider, monkeypatch):
    forged = alice.post(
        "/api/connectors/callback",
        {"provider": "github", "code": "c", "state": "abc:def"},
        format="json",
    )
    assert forged.status_code == 400
    state = _authorize(alice)["state"]
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + oauth.STATE_MAX_AGE_SECONDS + 5)
    expired = alice.post(
        "/api/connectors/callback",
        {"provider": "github", "code": "c", "state": state},
        format="json",
    )
    assert expired.status_code == 400
    assert "expired" in expired.json()["error"]["message"]


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "code"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "secret detail"},
            400,
            "oauth_exchange_failed",
        ),
        (200, {"error": "bad_verification_code"}, 400, "oauth_exchange_failed"),
        (500, {"error": "oops"}, 502, "provider_unavailable"),
        (200, b"<html>not json</html>", 502, "provider_unavailable"),
        (200, {"token_type": "bearer"}, 502, "provider_unavailable"),
    ],
)
def test_provider_failures_become_clear_errors(
    alice, oauth_provider, status, body, expected_status, code
):
    state = _authorize(alice)["state"]
    oauth_provider.answer(status, body)
    response = alice.post(
        "/api/connectors/callback",
        {"provider": "github", "code": "c", "state": state},
        format="json",
    )
    assert response.status_code == expected_status
    assert response.json()["error"]["code"] == code
    assert "secret detail" not in response.content.decode()
    assert not PlatformConnection.objects.exists()


def test_an_unreachable_provider_is_a_502(alice, oauth_provider, settings):
    state = _authorize(alice)["state"]
    clients = dict(settings.OAUTH_CLIENTS)
    clients["github"] = {**clients["github"], "token_url": "http://127.0.0.1:9/token"}
    settings.OAUTH_CLIENTS = clients
    response = alice.post(
        "/api/connectors/callback",
        {"provider": "github", "code": "c", "state": state},
        format="json",
    )
    assert response.status_code == 502


def test_an_unconfigured_provider_is_a_503(alice):
    response = alice.get("/api/connectors/spotify/authorize")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_not_configured"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"provider": "github"},
        {"provider": "github", "code": "", "state": "s"},
        {"provider": "myspace", "code": "c", "state": "s"},
        {"provider": 7, "code": "c", "state": "s"},
    ],
)
def test_bad_callback_bodies_are_400(alice, body):
    response = alice.post("/api/connectors/callback", body, format="json")
    assert response.status_code == 400
    assert response.json()["success"] is False


def test_malformed_json_is_a_400(alice):
    response = alice.generic(
        "POST", "/api/connectors/callback", "{nope", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


# --- Single use ---------------------------------------------------------------------------------
def _callback(client, state: str, provider: str = "github"):
    return client.post(
        "/api/connectors/callback",
        {"provider": provider, "code": "the-code", "state": state},
        format="json",
    )


def test_a_state_works_once(alice, alice_id, oauth_provider):
    state = _authorize(alice)["state"]
    oauth_provider.succeed()
    assert _callback(alice, state).status_code == 200
    replay = _callback(alice, state)
    assert replay.status_code == 400
    assert replay.json()["error"]["code"] == "state_already_used"
    assert len(oauth_provider.requests) == 1  # the replay never reached the provider
    assert OAuthStateUse.objects.count() == 1


@pytest.mark.postgres
def test_concurrent_callbacks_with_one_state_call_the_provider_once(
    alice, alice_id, oauth_provider
):
    """Six callbacks racing with one state: the state is claimed (committed) before the
    provider is called, so exactly one of them reaches it."""
    state = _authorize(alice)["state"]
    oauth_provider.succeed()
    oauth_provider.delay_seconds = 0.3  # all six are past their checks before one finishes
    barrier = threading.Barrier(6)
    responses: list[tuple[int, str]] = []

    def callback() -> None:
        try:
            barrier.wait(timeout=10)
            response = _callback(alice, state)
            responses.append((response.status_code, response.json().get("error", {}).get("code")))
        finally:
            db.connections.close_all()

    threads = [threading.Thread(target=callback) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(oauth_provider.requests) == 1
    assert sorted(responses) == [(200, None)] + [(400, "state_already_used")] * 5
    assert PlatformConnection.objects.filter(user_id=alice_id, is_active=True).count() == 1


def test_a_refused_code_uses_up_the_state(alice, oauth_provider):
    """The provider refused the code: it is dead, and a retry with this state could only hit
    the provider again for nothing. Starting over gets a new state."""
    state = _authorize(alice)["state"]
    oauth_provider.answer(400, {"error": "invalid_grant"})
    assert _callback(alice, state).json()["error"]["code"] == "oauth_exchange_failed"
    oauth_provider.succeed()
    assert _callback(alice, state).json()["error"]["code"] == "state_already_used"
    assert len(oauth_provider.requests) == 1
    assert _callback(alice, _authorize(alice)["state"]).status_code == 200


@pytest.mark.parametrize("failure", ["http_503", "timeout"])
def test_a_failed_exchange_does_not_use_up_the_state(alice, oauth_provider, settings, failure):
    """Transient: the code may still be good, so the same callback may be retried."""
    state = _authorize(alice)["state"]
    if failure == "http_503":
        oauth_provider.answer(503, {"error": "try later"})
    else:
        settings.OAUTH_HTTP_TIMEOUT = 0.3
        oauth_provider.succeed()
        oauth_provider.delay_seconds = 1.0
    assert _callback(alice, state).status_code == 502
    oauth_provider.delay_seconds = 0.0
    oauth_provider.succeed()
    assert _callback(alice, state).status_code == 200


def test_used_states_older_than_their_lifetime_are_pruned(alice, oauth_provider):
    old = OAuthStateUse.objects.create(
        nonce="old", used_at=timezone.now() - timedelta(seconds=oauth.STATE_MAX_AGE_SECONDS * 2)
    )
    recent = OAuthStateUse.objects.create(nonce="recent", used_at=timezone.now())
    oauth_provider.succeed()
    assert _callback(alice, _authorize(alice)["state"]).status_code == 200
    remaining = set(OAuthStateUse.objects.values_list("nonce", flat=True))
    assert old.nonce not in remaining and recent.nonce in remaining and len(remaining) == 2


def test_the_redirect_uri_comes_from_settings_only(alice, oauth_provider):
    data = alice.get(
        "/api/connectors/github/authorize?redirect_uri=https://evil.example/cb"
    ).json()["data"]
    query = parse_qs(urlsplit(data["authorization_url"]).query)
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/oauth/callback"]
    oauth_provider.succeed()
    response = alice.post(
        "/api/connectors/callback",
        {
            "provider": "github",
            "code": "c",
            "state": data["state"],
            "redirect_uri": "https://evil.example/cb",
        },
        format="json",
    )
    assert response.status_code == 200
    assert oauth_provider.requests[-1]["form"]["redirect_uri"] == (
        "http://127.0.0.1:8000/oauth/callback"
    )


@pytest.mark.parametrize(
    ("status", "body", "expected_status"),
    [
        (401, {"error": "invalid_client"}, 400),
        (400, b"", 400),
        (400, {"error": ["not", "a", "string"]}, 400),
        (429, {"error": "slow_down"}, 400),
        (502, b"Bad gateway", 502),
        (200, b"", 502),
        (200, b"[1, 2]", 502),
        (200, {"access_token": ""}, 502),
        (200, {"access_token": 42}, 502),
        (200, {"access_token": "a", "expires_in": "soon", "scope": 7}, 200),
    ],
)
def test_odd_provider_answers_are_400_or_502_never_500(
    alice, oauth_provider, status, body, expected_status
):
    oauth_provider.answer(status, body)
    response = _callback(alice, _authorize(alice)["state"])
    assert response.status_code == expected_status, response.content
    assert response.json()["success"] is (expected_status == 200)


# --- Hostile token endpoints (issue 13) ---------------------------------------------------------
@pytest.fixture
def thief() -> Iterator[dict[str, Any]]:
    """Another host, where a redirect from the token endpoint would send the request."""
    seen: dict[str, Any] = {"requests": []}

    class Handler(JSONHandler):
        def _steal(self) -> None:
            seen["requests"].append(dict(self.headers))
            self.send_json(200, {"access_token": "planted-by-the-thief", "expires_in": 3600})

        do_GET = do_POST = _steal

    with local_http_server(Handler) as url:
        seen["url"] = url
        yield seen


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_from_the_token_endpoint_is_never_followed(
    alice, alice_id, oauth_provider, thief, status
):
    oauth_provider.answer(status, b"")
    oauth_provider.reply_headers = {"Location": f"{thief['url']}/steal"}
    response = _callback(alice, _authorize(alice, "reddit")["state"], provider="reddit")
    assert response.status_code == 502, response.content
    assert response.json()["error"]["code"] == "oauth_exchange_failed"
    assert thief["requests"] == []  # the client secret (HTTP Basic for reddit) went nowhere
    assert not PlatformConnection.objects.filter(user_id=alice_id).exists()


def test_a_dripping_token_endpoint_is_cut_at_one_overall_deadline(alice, oauth_provider, settings):
    """22 bytes at 4 bytes/s take 5.5 s; a per-read timeout of 1 s would never fire."""
    settings.OAUTH_HTTP_TIMEOUT = 1.0
    oauth_provider.answer(200, {"access_token": "a"})
    oauth_provider.drip_seconds = 0.25
    started = time.monotonic()
    response = _callback(alice, _authorize(alice)["state"])
    assert time.monotonic() - started < 3.5
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "provider_unavailable"


def test_a_plain_http_token_url_is_refused_outside_debug(alice, oauth_provider, settings):
    clients = dict(settings.OAUTH_CLIENTS)
    clients["github"] = {**clients["github"], "token_url": "http://provider.example/token"}
    settings.OAUTH_CLIENTS = clients
    response = _callback(alice, _authorize(alice)["state"])
    assert response.status_code == 503, response.content
    assert "OAUTH_GITHUB_TOKEN_URL" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"OAUTH_GITHUB_TOKEN_URL": "http://provider.example/token"}, "OAUTH_GITHUB_TOKEN_URL"),
        ({"OAUTH_REDDIT_AUTHORIZE_URL": "ftp://x/authorize"}, "OAUTH_REDDIT_AUTHORIZE_URL"),
        ({"SUPABASE_URL": "http://abc.supabase.co"}, "SUPABASE_URL"),
        ({"OAUTH_GITHUB_TOKEN_URL": "https://provider.example/token"}, None),
        ({"OAUTH_GITHUB_TOKEN_URL": "http://127.0.0.1:9000/token"}, None),
        ({"OAUTH_GITHUB_TOKEN_URL": "http://provider:9000/token", "DJANGO_DEBUG": "1"}, None),
        ({"SUPABASE_URL": "http://127.0.0.1:54321"}, None),
    ],
)
def test_outbound_urls_must_be_https_outside_debug_at_start_up(env, error):
    result = _load(**env)
    if error is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert f"{error}=" in result.stderr and "https" in result.stderr


@pytest.mark.parametrize(
    "expires_in",
    [b"1000000000000", b"1e308", b"1e400", b"1" + b"0" * 400, b"Infinity", b"NaN", b"-5"],
)
def test_an_absurd_expires_in_is_clamped_never_a_500(alice, alice_id, oauth_provider, expires_in):
    oauth_provider.answer(200, b'{"access_token": "a", "expires_in": %s}' % expires_in)
    response = _callback(alice, _authorize(alice)["state"])
    assert response.status_code == 200, response.content
    expires_at = PlatformConnection.objects.get(user_id=alice_id).token_expires_at
    if expires_in in (b"NaN", b"-5"):
        assert expires_at is None
    else:
        assert expires_at is not None
        assert expires_at <= timezone.now() + timedelta(seconds=oauth.MAX_EXPIRES_IN_SECONDS)
        assert expires_at > timezone.now() + timedelta(days=300)
