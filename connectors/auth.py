"""Supabase access tokens for DRF: `Authorization: Bearer <access token>`.

Two ways a token can be signed, chosen by its header's `alg` before any key is picked:

- ES256 / RS256 (what Supabase issues today): verified with the project's public keys from
  `SUPABASE_URL/auth/v1/.well-known/jwks.json`, through one PyJWKClient per process (the key set
  cached JWKS_CACHE_SECONDS, one forced refresh on an unknown `kid`, a short fetch timeout). The
  key's own type decides its algorithm, so a token cannot choose how its key is used.
- HS256 (legacy): only when SUPABASE_JWT_SECRET is set, and only ever with that secret, so an
  HS256 token "signed" with the public JWKS key (algorithm confusion) fails like any forgery.

Users' tokens (role `authenticated`) must carry aud=authenticated, an unexpired exp, a UUID
`sub` and, when SUPABASE_URL is set, iss = `<SUPABASE_URL>/auth/v1`; `nbf` and `iat` in the
future are refused (JWT_LEEWAY_SECONDS of clock skew either way). The service-role key (role
`service_role`, iss `supabase`, no sub and no aud, as Supabase issues it) may act for any user.
`anon` tokens and anything else are refused. `user_metadata` is user-editable and is never used
for authorization (REFERENCES.md, Supabase). supabase-py's get_claims() checks neither aud nor
iss, which is why this module does the verification itself.

A JWKS that cannot be fetched is a 503 `auth_unavailable` with Retry-After, not a 401: the
client's token may be perfectly good and there is nothing the client could change.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from connectors.cache import normalize_user_id
from connectors.errors import InvalidUserId

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256"})
SYMMETRIC_ALGORITHM = "HS256"
SERVICE_ROLE = "service_role"
AUTHENTICATED = "authenticated"
METRICS_ROLE = "metrics"  # the METRICS_TOKEN bearer: /metrics only
JWKS_PATH = "/auth/v1/.well-known/jwks.json"
MAX_TOKEN_LENGTH = 8192


class AuthUnavailable(exceptions.APIException):
    """The identity provider (JWKS, Supabase Auth) could not be asked: retry later."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Access tokens cannot be verified right now; try again shortly."
    default_code = "auth_unavailable"
    retry_after = 5


@dataclass(frozen=True, slots=True)
class SupabasePrincipal:
    user_id: str | None
    role: str
    claims: dict[str, Any] = field(repr=False)
    is_authenticated: bool = True
    is_staff: bool = False

    @property
    def is_service_role(self) -> bool:
        return self.role == SERVICE_ROLE


# --- JWKS -------------------------------------------------------------------------------------
_jwks_clients: dict[tuple[str, float, float, float], jwt.PyJWKClient] = {}
_jwks_lock = threading.Lock()


def jwks_url() -> str:
    return f"{settings.SUPABASE_URL}{JWKS_PATH}"


def jwks_client() -> jwt.PyJWKClient:
    """This process's PyJWKClient for the configured project (created on first use).

    One per process so its key-set cache is shared by every request; keyed by URL and tuning
    so a settings change (tests) gets a fresh client rather than another project's keys.
    """
    config = (
        jwks_url(),
        float(settings.JWKS_CACHE_SECONDS),
        float(settings.JWKS_TIMEOUT),
        float(settings.JWKS_REFRESH_COOLDOWN_SECONDS),
    )
    client = _jwks_clients.get(config)
    if client is None:
        with _jwks_lock:
            client = _jwks_clients.get(config)
            if client is None:
                client = jwt.PyJWKClient(
                    config[0],
                    cache_jwk_set=True,
                    lifespan=config[1],
                    timeout=config[2],
                    cooldown_duration=config[3],
                    # No per-kid lru cache: a key removed from the JWKS (revoked) must stop
                    # verifying once the key set is refetched.
                    cache_keys=False,
                )
                _jwks_clients[config] = client
    return client


def _jwks_signing_key(token: str, alg: str) -> Any:
    if not settings.SUPABASE_URL:
        raise exceptions.AuthenticationFailed("The access token's algorithm is not accepted.")
    try:
        signing_key = jwks_client().get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError as e:
        raise AuthUnavailable() from e
    except (jwt.PyJWKClientError, jwt.PyJWKSetError) as e:
        # An unknown kid (after the one refresh), or a key set without usable keys.
        raise exceptions.AuthenticationFailed(
            "The access token was signed with an unknown key."
        ) from e
    except jwt.InvalidTokenError as e:
        raise exceptions.AuthenticationFailed("The access token is malformed.") from e
    if signing_key.algorithm_name != alg:
        # The key's type (EC P-256 / RSA) fixes its algorithm; the token does not get a say.
        raise exceptions.AuthenticationFailed("The access token's algorithm is not accepted.")
    return signing_key.key


# --- Verification -----------------------------------------------------------------------------
# Tokens already verified by this process, with when to stop trusting the verdict: the token's
# own expiry, and at most _VERIFIED_SECONDS (no later than PyJWKClient's own key cache would
# keep accepting a revoked signing key). The key includes the settings a verdict depends on.
# Full signature and claim checks cost about 0.1 ms a request; a dashboard polls with the same
# token for an hour. Failures are never remembered.
_VERIFIED_SECONDS = 300.0
_VERIFIED_MAX = 10_000
_verified: dict[tuple[str, str, str, int], tuple[SupabasePrincipal, float]] = {}


def verify_token(token: str) -> SupabasePrincipal:
    """Verify a Supabase JWT, or raise AuthenticationFailed with a reason a client can act on."""
    key = (token, settings.SUPABASE_URL, settings.SUPABASE_JWT_SECRET, settings.JWT_LEEWAY_SECONDS)
    known = _verified.get(key)
    now = time.time()
    if known is not None and now < known[1]:
        return known[0]
    principal = _verify_token(token)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()  # crude but O(1) amortized, and bounded
    expires = float(principal.claims.get("exp", now)) + settings.JWT_LEEWAY_SECONDS
    _verified[key] = (principal, min(expires, now + _VERIFIED_SECONDS))
    return principal


def _verify_token(token: str) -> SupabasePrincipal:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as e:  # DecodeError, and a kid that is not a string
        raise exceptions.AuthenticationFailed("The access token is malformed.") from e
    alg = header.get("alg")
    key: Any
    if alg in ASYMMETRIC_ALGORITHMS:
        key = _jwks_signing_key(token, str(alg))
    elif alg == SYMMETRIC_ALGORITHM and settings.SUPABASE_JWT_SECRET:
        key = settings.SUPABASE_JWT_SECRET
    else:
        # Refuses alg "none", HS256 without a configured secret, and anything else, before any
        # key is chosen (no algorithm confusion).
        raise exceptions.AuthenticationFailed("The access token's algorithm is not accepted.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[str(alg)],
            options={"require": ["exp"], "verify_aud": False},
            leeway=settings.JWT_LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError as e:
        raise exceptions.AuthenticationFailed("The access token has expired.") from e
    except jwt.ImmatureSignatureError as e:
        raise exceptions.AuthenticationFailed("The access token is not valid yet.") from e
    except jwt.InvalidTokenError as e:
        raise exceptions.AuthenticationFailed("The access token is not valid.") from e

    role = claims.get("role")
    if role == SERVICE_ROLE:
        return SupabasePrincipal(user_id=None, role=SERVICE_ROLE, claims=claims)
    if role != AUTHENTICATED:
        raise exceptions.AuthenticationFailed(
            "This API needs a signed-in user's access token (role 'authenticated')."
        )
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if AUTHENTICATED not in audiences:
        raise exceptions.AuthenticationFailed("The access token's audience is not accepted.")
    if settings.SUPABASE_URL and claims.get("iss") != f"{settings.SUPABASE_URL}/auth/v1":
        raise exceptions.AuthenticationFailed("The access token was issued by another project.")
    try:
        user_id = normalize_user_id(claims.get("sub"))
    except InvalidUserId as e:
        raise exceptions.AuthenticationFailed("The access token has no valid subject.") from e
    return SupabasePrincipal(user_id=user_id, role=AUTHENTICATED, claims=claims)


class SupabaseJWTAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[SupabasePrincipal, str] | None:
        parts = get_authorization_header(request).split()
        if not parts:
            return None
        if parts[0].lower() != b"bearer" or len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <access token>'."
            )
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError as e:
            raise exceptions.AuthenticationFailed("The access token is malformed.") from e
        if len(token) > MAX_TOKEN_LENGTH:
            raise exceptions.AuthenticationFailed("The access token is malformed.")
        return verify_token(token), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="connectors"'


class MetricsTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <METRICS_TOKEN>`, for Prometheus. Anything else falls through to
    the next authenticator (a service-role JWT)."""

    def authenticate(self, request: Request) -> tuple[SupabasePrincipal, str] | None:
        expected = settings.METRICS_TOKEN
        parts = get_authorization_header(request).split()
        if not expected or len(parts) != 2 or parts[0].lower() != b"bearer":
            return None
        if not hmac.compare_digest(parts[1], expected.encode()):
            return None
        return SupabasePrincipal(user_id=None, role=METRICS_ROLE, claims={}), expected

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="connectors"'


# --- Strict mode: ask Supabase Auth whether the session still exists -------------------------
_supabase_clients: dict[tuple[str, str, float], Any] = {}


def _supabase_client() -> Any:
    """One supabase-py client per process, never signed in (REFERENCES.md: create once with
    persist_session=False, auto_refresh_token=False)."""
    from supabase import ClientOptions, create_client

    apikey = settings.SUPABASE_ANON_KEY or settings.SUPABASE_SERVICE_ROLE_KEY
    config = (settings.SUPABASE_URL, apikey, float(settings.SUPABASE_AUTH_TIMEOUT))
    client = _supabase_clients.get(config)
    if client is None:
        with _jwks_lock:
            client = _supabase_clients.get(config)
            if client is None:
                import httpx

                client = create_client(
                    config[0],
                    config[1],
                    options=ClientOptions(
                        persist_session=False,
                        auto_refresh_token=False,
                        httpx_client=httpx.Client(timeout=config[2], follow_redirects=False),
                    ),
                )
                _supabase_clients[config] = client
    return client


def confirm_session(principal: SupabasePrincipal, token: str) -> None:
    """Strict mode: Supabase Auth must still know this token's user (GET /auth/v1/user).

    A verified JWT stays valid until it expires even after its user signed out or was deleted;
    for the writes that change a user's connections, SUPABASE_STRICT_WRITES closes that window.
    """
    from supabase_auth.errors import AuthApiError, AuthError

    try:
        response = _supabase_client().auth.get_user(token)
    except AuthApiError as e:
        if e.status >= 500:
            raise AuthUnavailable() from e
        raise exceptions.AuthenticationFailed(
            "The session behind this access token has ended; sign in again."
        ) from e
    except AuthError as e:  # network errors and the Auth server's 502/503/504
        raise AuthUnavailable() from e
    except ValueError as e:  # a body that is not a user (pydantic's ValidationError)
        raise AuthUnavailable() from e
    user = getattr(response, "user", None)
    if user is None or str(getattr(user, "id", "")) != principal.user_id:
        raise exceptions.AuthenticationFailed(
            "The session behind this access token has ended; sign in again."
        )


class IssueTokenUnavailable(Exception):
    """issue_token needs the HS256 secret, and this server has none (JWKS only)."""


def issue_token(
    *,
    user_id: str | None,
    service_role: bool = False,
    ttl_seconds: int = 3600,
    email: str | None = None,
) -> str:
    """Sign a token the way Supabase does, with the configured HS256 secret (demos, tests)."""
    if not settings.SUPABASE_JWT_SECRET:
        raise IssueTokenUnavailable(
            "Tokens are signed with SUPABASE_JWT_SECRET (HS256), which is not set: this server "
            "verifies tokens with the project's JWKS only. Sign in through Supabase Auth for a "
            "real token, or set SUPABASE_JWT_SECRET to the project's legacy JWT secret."
        )
    now = int(time.time())
    claims: dict[str, Any]
    if service_role:
        claims = {"iss": "supabase", "role": SERVICE_ROLE, "iat": now, "exp": now + ttl_seconds}
    else:
        if user_id is None:
            raise ValueError("a user token needs a user_id")
        issuer = f"{settings.SUPABASE_URL}/auth/v1" if settings.SUPABASE_URL else "supabase"
        claims = {
            "iss": issuer,
            "aud": AUTHENTICATED,
            "role": AUTHENTICATED,
            "sub": user_id,
            "iat": now,
            "exp": now + ttl_seconds,
            "aal": "aal1",
            "is_anonymous": False,
            "email": email or f"{user_id[:8]}@example.com",
        }
    return jwt.encode(claims, settings.SUPABASE_JWT_SECRET, algorithm=SYMMETRIC_ALGORITHM)
