"""Supabase access tokens signed with asymmetric keys, verified against a real local JWKS server.

The server on 127.0.0.1 stands in for `SUPABASE_URL/auth/v1/.well-known/jwks.json` (and for
`/auth/v1/user`, which strict mode asks); the ES256 and RS256 keys are made here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from rest_framework.test import APIClient

from connectors import auth
from tests.support.servers import JSONHandler, local_http_server
from tests.support.tokens import user_claims

pytestmark = pytest.mark.django_db


# --- Keys -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algorithm = ECAlgorithm if self.alg == "ES256" else RSAAlgorithm
        data: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def es256_key() -> SigningKey:
    return SigningKey(
        f"es-{uuid.uuid4().hex[:8]}", "ES256", ec.generate_private_key(ec.SECP256R1())
    )


@pytest.fixture(scope="module")
def rsa_private() -> Any:
    # RSA generation is the slow part (~50 ms); one per module is enough.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- The Supabase stand-in ----------------------------------------------------------------------
@dataclass
class SupabaseServer:
    url: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    jwks_fetches: int = 0
    jwks_status: int = 200
    jwks_delay: float = 0.0
    # (status, delay) for the next fetches, in order; then jwks_status / jwks_delay.
    jwks_plan: list[tuple[int, float]] = field(default_factory=list)
    jwks_headers: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)  # access token -> user id
    user_status: int | None = None  # force /auth/v1/user's answer
    user_delay: float = 0.0
    user_requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def supabase(settings: Any) -> Iterator[SupabaseServer]:
    state = SupabaseServer()

    class Handler(JSONHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError):  # a client that gave up on a hanging JWKS
                super().handle()

        def do_GET(self) -> None:
            if self.path == auth.JWKS_PATH:
                state.jwks_fetches += 1
                status, delay = (
                    state.jwks_plan.pop(0)
                    if state.jwks_plan
                    else (state.jwks_status, state.jwks_delay)
                )
                time.sleep(delay)
                body: Any = {"keys": [k.jwk() for k in state.keys]}
                with contextlib.suppress(OSError):  # a client that gave up waiting
                    self.send_json(status, body, headers=state.jwks_headers)
            elif self.path == "/auth/v1/user":
                self._user()
            else:
                self.send_json(404, {"error": "not found"})

        def _user(self) -> None:
            state.user_requests.append({k.lower(): v for k, v in self.headers.items()})
            time.sleep(state.user_delay)
            if state.user_status is not None:
                self.send_json(state.user_status, {"code": state.user_status, "msg": "forced"})
                return
            if not self.headers.get("apikey"):
                self.send_json(401, {"message": "No API key found in request"})
                return
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            user_id = state.sessions.get(token)
            if user_id is None:
                body = {"code": 403, "error_code": "session_not_found", "msg": "Session gone"}
                self.send_json(403, body)
                return
            self.send_json(
                200,
                {
                    "id": user_id,
                    "aud": "authenticated",
                    "role": "authenticated",
                    "email": "alice@example.com",
                    "app_metadata": {},
                    "user_metadata": {},
                    "created_at": "2026-01-01T00:00:00Z",
                },
            )

    with local_http_server(Handler) as url:
        state.url = url
        settings.SUPABASE_URL = state.url
        settings.JWKS_TIMEOUT = 0.5
        settings.JWKS_REFRESH_COOLDOWN_SECONDS = 0.0
        settings.SUPABASE_ANON_KEY = "anon-key-for-tests"
        yield state


@pytest.fixture
def es_key(supabase: SupabaseServer) -> SigningKey:
    key = es256_key()
    supabase.keys.append(key)
    return key


@pytest.fixture
def rs_key(supabase: SupabaseServer, rsa_private: Any) -> SigningKey:
    key = SigningKey(f"rs-{uuid.uuid4().hex[:8]}", "RS256", rsa_private)
    supabase.keys.append(key)
    return key


def claims_for(user_id: str, supabase: SupabaseServer, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("session_id", str(uuid.uuid4()))
    return user_claims(user_id, issuer=f"{supabase.url}/auth/v1", **overrides)


def sign(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid, **header})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with(secret: bytes, claims: dict[str, Any], **header: Any) -> str:
    """An HS256 token made by hand (PyJWT refuses a PEM key as an HMAC secret, attackers don't)."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def get_status(token: str, user_id: str) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(f"/api/connectors/status/{user_id}")


def assert_401(response: Any, message: str = "") -> None:
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert message in response.json()["error"]["message"]


# --- Valid tokens -------------------------------------------------------------------------------
@pytest.mark.parametrize("key_fixture", ["es_key", "rs_key"])
def test_a_token_signed_with_a_project_key_is_accepted(request, supabase, alice_id, key_fixture):
    key = request.getfixturevalue(key_fixture)
    response = get_status(sign(key, claims_for(alice_id, supabase)), alice_id)
    assert response.status_code == 200, response.content
    assert supabase.jwks_fetches == 1


def test_the_key_set_is_fetched_once_and_cached_by_one_client_per_process(
    supabase, es_key, alice_id
):
    for _ in range(5):
        assert get_status(sign(es_key, claims_for(alice_id, supabase)), alice_id).status_code == 200
    assert supabase.jwks_fetches == 1
    assert auth.key_set() is auth.key_set()
    assert auth.key_set().ttl == 600  # about ten minutes, as Supabase's edge


def test_exp_within_the_leeway_is_accepted_and_beyond_it_refused(supabase, es_key, alice_id):
    now = int(time.time())
    fresh = claims_for(alice_id, supabase, exp=now - 10)  # JWT_LEEWAY_SECONDS = 30
    assert get_status(sign(es_key, fresh), alice_id).status_code == 200
    stale = claims_for(alice_id, supabase, exp=now - 3600, iat=now - 7200)
    assert_401(get_status(sign(es_key, stale), alice_id), "expired")


def test_a_token_without_exp_is_refused(supabase, es_key, alice_id):
    claims = claims_for(alice_id, supabase)
    del claims["exp"]
    assert_401(get_status(sign(es_key, claims), alice_id))


def test_a_not_yet_valid_token_is_refused(supabase, es_key, alice_id):
    claims = claims_for(alice_id, supabase, nbf=int(time.time()) + 3600)
    assert_401(get_status(sign(es_key, claims), alice_id), "not valid yet")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aud": "someone-else"}, "audience"),
        ({"aud": None}, "audience"),
        ({"iss": "https://evil.supabase.co/auth/v1"}, "another project"),
        ({"iss": None}, "another project"),
        ({"sub": "not-a-uuid"}, "subject"),
        ({"sub": "7F9C24E83B1A4B8E9A521C6F4C1E2D3A"}, "subject"),  # UUID without dashes
        ({"sub": None}, "subject"),
        ({"role": "anon"}, "role 'authenticated'"),
        ({"role": None}, "role 'authenticated'"),
        ({"role": "supabase_admin"}, "role 'authenticated'"),
    ],
)
def test_claims_that_do_not_hold_up_are_refused(supabase, es_key, alice_id, overrides, message):
    token = sign(es_key, claims_for(alice_id, supabase, **overrides))
    assert_401(get_status(token, alice_id), message)


def test_the_anon_key_is_refused(supabase, es_key, alice_id):
    now = int(time.time())
    anon = {"iss": "supabase", "role": "anon", "iat": now, "exp": now + 600}
    assert_401(get_status(sign(es_key, anon), alice_id))


def test_a_service_role_token_from_the_project_acts_for_anyone(supabase, rs_key):
    now = int(time.time())
    service = {"iss": "supabase", "role": "service_role", "iat": now, "exp": now + 600}
    assert get_status(sign(rs_key, service), str(uuid.uuid4())).status_code == 200


def test_a_user_token_cannot_read_another_user(supabase, es_key, alice_id, bob_id):
    response = get_status(sign(es_key, claims_for(alice_id, supabase)), bob_id)
    assert response.status_code == 403


# --- Keys: unknown, rotated, forged ---------------------------------------------------------------
def test_an_unknown_kid_refreshes_the_key_set_once_and_finds_a_rotated_key(
    supabase, es_key, alice_id
):
    assert get_status(sign(es_key, claims_for(alice_id, supabase)), alice_id).status_code == 200
    assert supabase.jwks_fetches == 1
    # Supabase rotates: the new key is published while clients still hold the old set.
    rotated = es256_key()
    supabase.keys.append(rotated)
    assert get_status(sign(rotated, claims_for(alice_id, supabase)), alice_id).status_code == 200
    assert supabase.jwks_fetches == 2  # exactly one refresh
    assert get_status(sign(rotated, claims_for(alice_id, supabase)), alice_id).status_code == 200
    assert supabase.jwks_fetches == 2  # and then cached


def test_a_kid_that_is_not_published_is_refused_after_one_refresh(supabase, es_key, alice_id):
    assert get_status(sign(es_key, claims_for(alice_id, supabase)), alice_id).status_code == 200
    stranger = es256_key()  # never published
    assert_401(get_status(sign(stranger, claims_for(alice_id, supabase)), alice_id), "unknown key")
    assert supabase.jwks_fetches == 2  # the first load, then one refresh for the unknown kid


def test_a_kid_missing_from_a_set_fetched_for_this_very_request_is_not_fetched_again(
    supabase, es_key, alice_id
):
    stranger = es256_key()
    assert_401(get_status(sign(stranger, claims_for(alice_id, supabase)), alice_id), "unknown key")
    assert supabase.jwks_fetches == 1


def test_unknown_kids_cannot_force_a_fetch_per_request(supabase, es_key, alice_id, settings):
    settings.JWKS_REFRESH_COOLDOWN_SECONDS = 30.0
    assert get_status(sign(es_key, claims_for(alice_id, supabase)), alice_id).status_code == 200
    for _ in range(5):
        token = sign(es256_key(), claims_for(alice_id, supabase))
        assert_401(get_status(token, alice_id), "unknown key")
    assert supabase.jwks_fetches == 1  # the cool-down


def test_a_token_signed_by_another_key_with_a_published_kid_is_refused(supabase, es_key, alice_id):
    impostor = SigningKey(es_key.kid, "ES256", ec.generate_private_key(ec.SECP256R1()))
    assert_401(get_status(sign(impostor, claims_for(alice_id, supabase)), alice_id))


def test_a_token_cannot_pick_another_algorithm_for_a_published_key(
    supabase, es_key, rs_key, alice_id
):
    # RS256 in the header, the EC key's kid: the key's type decides, the token is refused.
    token = jwt.encode(
        claims_for(alice_id, supabase),
        rs_key.private,
        algorithm="RS256",
        headers={"kid": es_key.kid},
    )
    assert_401(get_status(token, alice_id), "algorithm")


def test_alg_none_is_refused(supabase, es_key, alice_id):
    unsigned = jwt.encode(
        claims_for(alice_id, supabase), None, algorithm="none", headers={"kid": es_key.kid}
    )
    assert_401(get_status(unsigned, alice_id), "algorithm")
    head = b64(json.dumps({"alg": "none", "kid": es_key.kid}).encode())
    body = b64(json.dumps(claims_for(alice_id, supabase)).encode())
    assert_401(get_status(f"{head}.{body}.", alice_id))


@pytest.mark.parametrize("with_secret", [True, False])
@pytest.mark.parametrize("key_fixture", ["es_key", "rs_key"])
def test_hs256_signed_with_the_public_key_is_refused(
    request, supabase, alice_id, settings, with_secret, key_fixture
):
    """Algorithm confusion: the public key (anyone can fetch it) used as an HMAC secret."""
    key = request.getfixturevalue(key_fixture)
    if not with_secret:
        settings.SUPABASE_JWT_SECRET = ""
    claims = claims_for(alice_id, supabase)
    for secret in (key.public_pem(), json.dumps(key.jwk()).encode()):
        assert_401(get_status(hs256_with(secret, claims, kid=key.kid), alice_id))


def test_hs256_is_accepted_only_while_the_secret_is_configured(supabase, alice_id, settings):
    token = jwt.encode(
        claims_for(alice_id, supabase), settings.SUPABASE_JWT_SECRET, algorithm="HS256"
    )
    assert get_status(token, alice_id).status_code == 200
    settings.SUPABASE_JWT_SECRET = ""
    assert_401(get_status(token, alice_id), "algorithm")


def test_asymmetric_tokens_are_refused_without_supabase_url(es_key, supabase, alice_id, settings):
    token = sign(es_key, claims_for(alice_id, supabase))
    settings.SUPABASE_URL = ""
    assert_401(get_status(token, alice_id), "algorithm")
    assert supabase.jwks_fetches == 0


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer a b",
        "bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not.a.jwt",
        "Bearer ....",
        "Bearer eyJhbGciOiJFUzI1NiJ9.e30.",
        "Bearer " + b64(b'{"alg":"ES256","kid":7}') + ".e30.c2ln",
        "Bearer " + b64(b'["ES256"]') + ".e30.c2ln",
        "Bearer " + "a" * 9000,
        "Token abc",
    ],
)
def test_malformed_authorization_headers_are_401_never_500(supabase, es_key, alice_id, header):
    response = APIClient().get(f"/api/connectors/status/{alice_id}", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401, response.content
    assert response.json()["success"] is False


def test_non_ascii_authorization_header_is_401():
    response = APIClient().get(
        f"/api/connectors/status/{uuid.uuid4()}", HTTP_AUTHORIZATION="Bearer \u00e9t\u00e9"
    )
    assert response.status_code == 401


# --- The JWKS endpoint failing ------------------------------------------------------------------
@pytest.mark.parametrize("failure", ["http_500", "timeout", "refused", "not_json"])
def test_an_unreachable_jwks_is_a_503_with_retry_after(
    supabase, es_key, alice_id, settings, failure
):
    token = sign(es_key, claims_for(alice_id, supabase))
    if failure == "http_500":
        supabase.jwks_status = 500
    elif failure == "timeout":
        supabase.jwks_delay = 1.0  # JWKS_TIMEOUT is 0.5 s here
    elif failure == "refused":
        settings.SUPABASE_URL = "http://127.0.0.1:9"
        token = sign(es_key, claims_for(alice_id, supabase, iss="http://127.0.0.1:9/auth/v1"))
    started = time.monotonic()
    if failure == "not_json":
        supabase.keys.clear()  # {"keys": []}: a key set without keys
        response = get_status(token, alice_id)
        assert_401(response, "unknown key")
        return
    response = get_status(token, alice_id)
    assert time.monotonic() - started < 2.5
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "auth_unavailable"
    assert response["Retry-After"] == "5"


# --- The JWKS failing for a while (issue 13) ------------------------------------------------------
HANG = 3.0  # seconds a "hanging" JWKS holds its answer, far past JWKS_TIMEOUT (0.5 s here)


def verify_concurrently(make_token: Callable[[], str], count: int = 8) -> list[tuple[float, str]]:
    """`count` threads verify a token each (a new one each: no verdict cache), all at once;
    returns (seconds taken, "ok" or the exception's class name) per thread."""
    tokens = [make_token() for _ in range(count)]
    barrier = threading.Barrier(count)
    results: list[tuple[float, str]] = []

    def verify(token: str) -> None:
        barrier.wait(timeout=10)
        started = time.monotonic()
        try:
            auth.verify_token(token)
            outcome = "ok"
        except Exception as e:
            outcome = type(e).__name__
        results.append((time.monotonic() - started, outcome))

    threads = [threading.Thread(target=verify, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG + 10)
    return results


@pytest.fixture
def outage_settings(settings: Any, supabase: SupabaseServer) -> Any:
    settings.JWKS_CACHE_SECONDS = 1
    settings.JWKS_REFRESH_COOLDOWN_SECONDS = 30.0
    settings.JWKS_STALE_IF_ERROR_SECONDS = 3600
    return settings


@pytest.mark.parametrize("failure", [(500, 0.0), (500, HANG)], ids=["http_500", "hang"])
def test_an_expired_key_set_keeps_verifying_while_the_jwks_fails(
    outage_settings, supabase, es_key, alice_id, failure
):
    assert get_status(sign(es_key, claims_for(alice_id, supabase)), alice_id).status_code == 200
    assert supabase.jwks_fetches == 1
    time.sleep(1.1)  # past JWKS_CACHE_SECONDS: the key set is expired
    supabase.jwks_status, supabase.jwks_delay = failure
    results = verify_concurrently(lambda: sign(es_key, claims_for(alice_id, supabase)))
    assert [outcome for _, outcome in results] == ["ok"] * 8
    # One fetch for all eight; only the thread that made it waited (at most JWKS_TIMEOUT).
    assert supabase.jwks_fetches == 2
    assert max(seconds for seconds, _ in results) < 2.0
    for _ in range(30):
        token = sign(es_key, claims_for(alice_id, supabase))
        assert get_status(token, alice_id).status_code == 200
    assert supabase.jwks_fetches == 2  # nothing more within the cool-down


def test_a_failing_jwks_with_no_key_set_yet_is_fetched_once_and_waited_for_once(
    outage_settings, supabase, es_key, alice_id
):
    supabase.jwks_status, supabase.jwks_delay = 500, HANG
    results = verify_concurrently(lambda: sign(es_key, claims_for(alice_id, supabase)))
    assert [outcome for _, outcome in results] == ["AuthUnavailable"] * 8
    assert supabase.jwks_fetches == 1
    # Each waited for the one fetch, at most JWKS_TIMEOUT (0.5 s), not for the others' turns.
    assert max(seconds for seconds, _ in results) < 2.0
    started = time.monotonic()
    response = get_status(sign(es_key, claims_for(alice_id, supabase)), alice_id)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert time.monotonic() - started < 0.4  # the failure is remembered for the cool-down
    assert supabase.jwks_fetches == 1


def test_the_last_good_key_set_is_used_only_for_a_bounded_time(
    outage_settings, supabase, es_key, alice_id
):
    outage_settings.JWKS_STALE_IF_ERROR_SECONDS = 0
    assert get_status(sign(es_key, claims_for(alice_id, supabase)), alice_id).status_code == 200
    time.sleep(1.1)
    supabase.jwks_status = 500
    response = get_status(sign(es_key, claims_for(alice_id, supabase)), alice_id)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "auth_unavailable"


def test_a_jwks_that_recovers_is_used_again_after_the_cool_down(
    outage_settings, supabase, es_key, alice_id
):
    outage_settings.JWKS_REFRESH_COOLDOWN_SECONDS = 0.5
    supabase.jwks_status = 500
    assert get_status(sign(es_key, claims_for(alice_id, supabase)), alice_id).status_code == 503
    supabase.jwks_status = 200
    time.sleep(0.6)
    assert get_status(sign(es_key, claims_for(alice_id, supabase)), alice_id).status_code == 200
    assert supabase.jwks_fetches == 2


def test_a_jwks_redirect_is_not_followed(supabase, alice_id):
    """A redirect to another host's key set would let that host sign anyone's tokens."""
    attacker = es256_key()

    class Attacker(JSONHandler):
        def do_GET(self) -> None:
            self.send_json(200, {"keys": [attacker.jwk()]})

    with local_http_server(Attacker) as elsewhere:
        supabase.jwks_status = 302
        supabase.jwks_headers = {"Location": f"{elsewhere}/jwks.json"}
        response = get_status(sign(attacker, claims_for(alice_id, supabase)), alice_id)
    assert response.status_code == 503, response.content
    assert supabase.jwks_fetches == 1


# --- Strict mode: supabase-py's auth.get_user against the local /auth/v1/user -------------------
@pytest.fixture
def strict(settings: Any, supabase: SupabaseServer) -> SupabaseServer:
    settings.SUPABASE_STRICT_WRITES = True
    return supabase


def _client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_strict_mode_confirms_the_session_before_a_sensitive_write(strict, es_key, alice_id):
    token = sign(es_key, claims_for(alice_id, strict))
    strict.sessions[token] = alice_id
    response = _client_with(token).post(f"/api/connectors/reset/{alice_id}")
    assert response.status_code == 200, response.content
    [sent] = strict.user_requests
    assert sent["authorization"] == f"Bearer {token}"
    assert sent["apikey"] == "anon-key-for-tests"


def test_strict_mode_refuses_a_token_whose_session_has_ended(strict, es_key, alice_id):
    token = sign(es_key, claims_for(alice_id, strict))  # valid JWT, but signed out
    client = _client_with(token)
    assert client.get(f"/api/connectors/status/{alice_id}").status_code == 200  # reads: no call
    assert strict.user_requests == []
    for response in (
        client.post(f"/api/connectors/reset/{alice_id}"),
        client.delete(f"/api/connectors/github/{alice_id}"),
        client.post(
            "/api/connectors/callback",
            {"provider": "github", "code": "c", "state": "s"},
            format="json",
        ),
    ):
        assert_401(response, "session")
    assert len(strict.user_requests) == 3


def test_strict_mode_refuses_a_session_of_another_user(strict, es_key, alice_id, bob_id):
    token = sign(es_key, claims_for(alice_id, strict))
    strict.sessions[token] = bob_id
    assert_401(_client_with(token).post(f"/api/connectors/reset/{alice_id}"), "session")


@pytest.mark.parametrize(("status", "expected"), [(401, 401), (500, 503), (503, 503)])
def test_strict_mode_maps_auth_server_failures(strict, es_key, alice_id, status, expected):
    token = sign(es_key, claims_for(alice_id, strict))
    strict.sessions[token] = alice_id
    strict.user_status = status
    response = _client_with(token).post(f"/api/connectors/reset/{alice_id}")
    assert response.status_code == expected, response.content


def test_strict_mode_with_supabase_auth_not_answering_is_a_503(strict, es_key, alice_id, settings):
    settings.SUPABASE_AUTH_TIMEOUT = 0.3
    token = sign(es_key, claims_for(alice_id, strict))
    strict.sessions[token] = alice_id
    strict.user_delay = 1.0
    started = time.monotonic()
    response = _client_with(token).post(f"/api/connectors/reset/{alice_id}")
    assert time.monotonic() - started < 1.0
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "auth_unavailable"
    assert response["Retry-After"] == "5"


def test_strict_mode_does_not_call_supabase_for_the_service_role(strict, rs_key, bob_id):
    now = int(time.time())
    service = sign(rs_key, {"iss": "supabase", "role": "service_role", "iat": now, "exp": now + 60})
    assert _client_with(service).post(f"/api/connectors/reset/{bob_id}").status_code == 200
    assert strict.user_requests == []
