from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from connectors.auth import issue_token
from tests.support.tokens import user_claims

pytestmark = pytest.mark.django_db


def _get(token: str, user_id: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(f"/api/connectors/status/{user_id}")


def _token(user_id: str, **overrides) -> str:
    return jwt.encode(user_claims(user_id, **overrides), settings.SUPABASE_JWT_SECRET, "HS256")


def test_a_valid_user_token_is_accepted(alice_id):
    assert _get(_token(alice_id), alice_id).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) - 3600},
        {"aud": "someone-else"},
        {"aud": None},
        {"role": "anon"},
        {"role": None},
        {"sub": "not-a-uuid"},
        {"sub": None},
    ],
)
def test_tokens_that_do_not_hold_up_are_401(alice_id, overrides):
    response = _get(_token(alice_id, **overrides), alice_id)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "authentication_failed"


def test_a_token_signed_with_another_secret_is_401(alice_id):
    forged = jwt.encode(user_claims(alice_id), "x" * 40, algorithm="HS256")
    assert _get(forged, alice_id).status_code == 401


def test_alg_none_is_401(alice_id):
    unsigned = jwt.encode(user_claims(alice_id), None, algorithm="none")
    assert _get(unsigned, alice_id).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer a b",
        "Basic dXNlcjpwYXNz",
        "Bearer not.a.jwt",
        "Bearer " + "a" * 9000,
        "Token abc",
    ],
)
def test_malformed_authorization_headers_are_401(alice_id, header):
    response = APIClient().get(f"/api/connectors/status/{alice_id}", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


def test_the_issuer_must_match_the_project_when_supabase_url_is_set(alice_id, settings):
    settings.SUPABASE_URL = "https://abc.supabase.co"
    assert (
        _get(_token(alice_id, iss="https://abc.supabase.co/auth/v1"), alice_id).status_code == 200
    )
    assert (
        _get(_token(alice_id, iss="https://evil.supabase.co/auth/v1"), alice_id).status_code == 401
    )
    # issue_token follows the setting, so demo tokens keep working.
    assert _get(issue_token(user_id=alice_id), alice_id).status_code == 200


def test_a_service_role_key_acts_for_anyone():
    token = issue_token(user_id=None, service_role=True)
    assert "sub" not in jwt.decode(token, options={"verify_signature": False})
    assert _get(token, str(uuid.uuid4())).status_code == 200


def test_cache_stats_needs_the_service_role_or_staff(alice, service, admin_client):
    assert alice.get("/api/admin/cache-stats").status_code == 403
    assert APIClient().get("/api/admin/cache-stats").status_code == 401
    response = service.get("/api/admin/cache-stats")
    assert response.status_code == 200
    data = response.json()["data"]
    assert {"hits", "misses", "hit_ratio", "keys", "redis_memory", "backend"} <= set(data)
    assert admin_client.get("/api/admin/cache-stats").status_code == 200


# --- Configuration: JWKS, the HS256 secret, or both -------------------------------------------
def test_production_needs_supabase_url_or_the_jwt_secret():
    from tests.test_settings import _load

    neither = _load(SUPABASE_JWT_SECRET="", SUPABASE_URL="")
    assert neither.returncode != 0
    assert "Neither SUPABASE_URL nor SUPABASE_JWT_SECRET is set" in neither.stderr
    assert _load(SUPABASE_JWT_SECRET="", SUPABASE_URL="https://abc.supabase.co").returncode == 0
    strict = _load(SUPABASE_STRICT_WRITES="1", SUPABASE_URL="https://abc.supabase.co")
    assert "SUPABASE_STRICT_WRITES=1 needs SUPABASE_URL and SUPABASE_ANON_KEY" in strict.stderr


def test_debug_derives_a_secret_only_without_a_real_project():
    import subprocess
    import sys

    from tests.test_settings import BASE_ENV

    probe = "import connectors_site.settings as s; print(bool(s.SUPABASE_JWT_SECRET))"
    env = {**BASE_ENV, "PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "1", "SUPABASE_JWT_SECRET": ""}
    derived = [
        subprocess.run(
            [sys.executable, "-c", probe],
            env={**env, "SUPABASE_URL": url},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for url in ("", "https://abc.supabase.co")
    ]
    assert derived == ["True", "False"]


def test_issue_token_says_what_it_needs_without_the_secret(settings):
    import io

    from django.core.management import CommandError, call_command

    settings.SUPABASE_JWT_SECRET = ""
    with pytest.raises(CommandError, match="signed with SUPABASE_JWT_SECRET"):
        call_command("issue_token", "--service-role", stdout=io.StringIO())


def test_a_remembered_token_is_refused_once_it_expires(alice_id, settings):
    settings.JWT_LEEWAY_SECONDS = 0
    expires = int(time.time()) + 2
    token = _token(alice_id, exp=expires)
    assert _get(token, alice_id).status_code == 200
    assert _get(token, alice_id).status_code == 200  # now from the verified-token cache
    time.sleep(max(0.0, expires + 0.2 - time.time()))
    assert _get(token, alice_id).status_code == 401


def test_a_remembered_token_is_checked_again_when_the_settings_change(alice_id, settings):
    settings.SUPABASE_URL = "https://old.supabase.co"
    token = _token(alice_id, iss="https://old.supabase.co/auth/v1")
    assert _get(token, alice_id).status_code == 200
    settings.SUPABASE_URL = "https://new.supabase.co"
    assert _get(token, alice_id).status_code == 401


# --- Claims that must hold up (issue 13) ------------------------------------------------------
def _raw_token(payload: bytes) -> str:
    """HS256 over a payload written by hand (PyJWT would not encode a string exp or 1e400)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(payload)
    key = settings.SUPABASE_JWT_SECRET.encode()
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def _service(**overrides) -> str:
    now = int(time.time())
    claims = {"iss": "supabase", "role": "service_role", "iat": now, "exp": now + 600}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, settings.SUPABASE_JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize("iss", [None, "https://evil.supabase.co/auth/v1", "Supabase", ""])
def test_a_service_role_token_needs_supabases_issuer(iss, settings):
    assert _get(_service(iss=iss), str(uuid.uuid4())).status_code == 401
    settings.SUPABASE_URL = "https://abc.supabase.co"
    assert _get(_service(iss=iss), str(uuid.uuid4())).status_code == 401


def test_a_service_role_token_from_supabase_or_the_project_is_accepted(settings):
    assert _get(_service(iss="supabase"), str(uuid.uuid4())).status_code == 200
    settings.SUPABASE_URL = "https://abc.supabase.co"
    project = _service(iss="https://abc.supabase.co/auth/v1")
    assert _get(project, str(uuid.uuid4())).status_code == 200


def test_with_hs256_only_user_tokens_need_the_configured_issuer(alice_id, settings):
    assert settings.SUPABASE_URL == "" and settings.SUPABASE_JWT_ISSUER == ""
    assert _get(_token(alice_id, iss="supabase"), alice_id).status_code == 200
    for iss in ("https://evil.supabase.co/auth/v1", None, ""):
        assert _get(_token(alice_id, iss=iss), alice_id).status_code == 401, iss
    settings.SUPABASE_JWT_ISSUER = "https://ref.supabase.co/auth/v1"
    assert (
        _get(_token(alice_id, iss="https://ref.supabase.co/auth/v1"), alice_id).status_code == 200
    )
    assert _get(_token(alice_id, iss="supabase"), alice_id).status_code == 401
    # SUPABASE_JWT_ISSUER wins over the one derived from SUPABASE_URL.
    settings.SUPABASE_URL = "https://abc.supabase.co"
    assert (
        _get(_token(alice_id, iss="https://ref.supabase.co/auth/v1"), alice_id).status_code == 200
    )


@pytest.mark.parametrize(
    "claim",
    [
        b'"exp": "%(later)d"',
        b'"exp": true, "nbf": 0',
        b'"exp": [%(later)d]',
        b'"exp": Infinity',
        b'"exp": NaN',
        b'"exp": 1e400',
        b'"exp": %(later)d, "iat": "%(now)d"',
        b'"exp": %(later)d, "nbf": "%(now)d"',
        b'"exp": 1000000000000',
        b'"exp": 1' + b"0" * 400,
    ],
)
def test_exp_must_be_a_number_and_not_absurd(alice_id, claim):
    now = int(time.time())
    fields = claim % {b"now": now, b"later": now + 600}
    payload = (
        b'{"iss": "supabase", "aud": "authenticated", "role": "authenticated", '
        b'"sub": "%s", %s}' % (alice_id.encode(), fields)
    )
    response = _get(_raw_token(payload), alice_id)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "authentication_failed"


def test_the_same_claims_with_numbers_are_accepted(alice_id):
    now = int(time.time())
    payload = (
        b'{"iss": "supabase", "aud": "authenticated", "role": "authenticated", '
        b'"sub": "%s", "exp": %d.5, "iat": %d, "nbf": %d}'
        % (alice_id.encode(), now + 600, now, now)
    )
    assert _get(_raw_token(payload), alice_id).status_code == 200


def test_a_user_token_living_longer_than_the_cap_is_refused(alice_id, settings):
    now = int(time.time())
    week = 7 * 24 * 3600
    assert week == settings.JWT_MAX_LIFETIME_SECONDS  # Supabase's own maximum JWT expiry
    assert _get(_token(alice_id, exp=now + week), alice_id).status_code == 200
    response = _get(_token(alice_id, exp=now + week + 3600), alice_id)
    assert response.status_code == 401
    assert "lives longer" in response.json()["error"]["message"]
    # Measured from iat when there is one, from now when there is none.
    assert _get(_token(alice_id, iat=None, exp=now + week + 3600), alice_id).status_code == 401
    old_iat = _token(alice_id, iat=now - week, exp=now + 3600)
    assert _get(old_iat, alice_id).status_code == 401
    settings.JWT_MAX_LIFETIME_SECONDS = 2 * week
    assert _get(_token(alice_id, exp=now + week + 3600), alice_id).status_code == 200


def test_a_service_key_is_not_lifetime_capped_and_a_huge_exp_never_crashes():
    """Supabase's legacy service_role keys are valid for ten years."""
    now = int(time.time())
    assert _get(_service(exp=now + 10 * 365 * 24 * 3600), str(uuid.uuid4())).status_code == 200
    payload = b'{"iss": "supabase", "role": "service_role", "exp": 1%s}' % (b"0" * 400)
    assert _get(_raw_token(payload), str(uuid.uuid4())).status_code == 200
