"""Supabase access tokens for DRF: `Authorization: Bearer <access token>`.

ES256 / RS256 tokens are verified with the project's JWKS (connectors/jwks.py: cached, kept
through JWKS outages, one fetch per cool-down), HS256 only with SUPABASE_JWT_SECRET; the token's
`alg` picks the path before any key is chosen, and a JWKS key's own type fixes its algorithm (no
algorithm confusion). User tokens need aud=authenticated, numeric exp/iat/nbf, a UUID `sub`,
iss = expected_issuer() and a lifetime within JWT_MAX_LIFETIME_SECONDS; the service role (iss
`supabase` or the project's issuer) may act for anyone. The rules in full: docs/architecture.md
("Authentication").
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

from connectors.errors import InvalidUserId
from connectors.ids import normalize_user_id
from connectors.jwks import KeySetCache, KeySetUnavailable, UnknownSigningKey

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256"})
SYMMETRIC_ALGORITHM = "HS256"
SERVICE_ROLE = "service_role"
# The issuer of Supabase's own legacy anon / service_role keys.
LEGACY_ISSUER = "supabase"
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
_key_sets: dict[tuple[str, float, float, float, float], KeySetCache] = {}
_jwks_lock = threading.Lock()


def jwks_url() -> str:
    return f"{settings.SUPABASE_URL}{JWKS_PATH}"


def key_set() -> KeySetCache:
    """This process's key-set cache for the configured project (created on first use).

    One per process so every request shares it; keyed by URL and tuning so a settings change
    (tests) gets a fresh cache rather than another project's keys.
    """
    config = (
        jwks_url(),
        float(settings.JWKS_CACHE_SECONDS),
        float(settings.JWKS_STALE_IF_ERROR_SECONDS),
        float(settings.JWKS_TIMEOUT),
        float(settings.JWKS_REFRESH_COOLDOWN_SECONDS),
    )
    cached = _key_sets.get(config)
    if cached is None:
        with _jwks_lock:
            cached = _key_sets.get(config)
            if cached is None:
                cached = KeySetCache(
                    config[0],
                    ttl=config[1],
                    stale_if_error=config[2],
                    timeout=config[3],
                    cooldown=config[4],
                )
                _key_sets[config] = cached
    return cached


def _jwks_signing_key(header: dict[str, Any], alg: str) -> Any:
    if not settings.SUPABASE_URL:
        raise exceptions.AuthenticationFailed("The access token's algorithm is not accepted.")
    kid = header.get("kid")
    try:
        if not isinstance(kid, str) or not kid:
            raise UnknownSigningKey("no kid")
        signing_key = key_set().signing_key(kid)
    except KeySetUnavailable as e:
        raise AuthUnavailable() from e
    except UnknownSigningKey as e:
        # Not in the key set, even after the refresh the cool-down allowed.
        raise exceptions.AuthenticationFailed(
            "The access token was signed with an unknown key."
        ) from e
    if signing_key.algorithm_name != alg:
        # The key's type (EC P-256 / RSA) fixes its algorithm; the token does not get a say.
        raise exceptions.AuthenticationFailed("The access token's algorithm is not accepted.")
    return signing_key.key


def expected_issuer() -> str:
    """The `iss` users' tokens must carry: SUPABASE_JWT_ISSUER, else the project's own
    (`<SUPABASE_URL>/auth/v1`), else "supabase" (HS256 only, no project URL: what
    issue_token signs with; set SUPABASE_JWT_ISSUER to accept a real project's tokens)."""
    if settings.SUPABASE_JWT_ISSUER:
        return str(settings.SUPABASE_JWT_ISSUER)
    if settings.SUPABASE_URL:
        return f"{settings.SUPABASE_URL}/auth/v1"
    return LEGACY_ISSUER


# --- Verification -----------------------------------------------------------------------------
# Tokens already verified by this process, with when to stop trusting the verdict: the token's
# own expiry, and at most _VERIFIED_SECONDS (no later than the key-set cache, connectors/jwks.py,
# would keep accepting a revoked signing key). The key includes the settings a verdict depends on.
# Full signature and claim checks cost about 0.1 ms a request; a dashboard polls with the same
# token for an hour. Failures are never remembered.
_VERIFIED_SECONDS = 300.0
_VERIFIED_MAX = 10_000
_verified: dict[tuple[object, ...], tuple[SupabasePrincipal, float]] = {}


def verify_token(token: str) -> SupabasePrincipal:
    """Verify a Supabase JWT, or raise AuthenticationFailed with a reason a client can act on."""
    key = (
        token,
        settings.SUPABASE_URL,
        settings.SUPABASE_JWT_SECRET,
        settings.SUPABASE_JWT_ISSUER,
        settings.JWT_LEEWAY_SECONDS,
        settings.JWT_MAX_LIFETIME_SECONDS,
    )
    known = _verified.get(key)
    now = time.time()
    if known is not None and now < known[1]:
        return known[0]
    principal = _verify_token(token)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()  # crude but O(1) amortized, and bounded
    # Compared before any float(): a service key's exp may be a (finite) huge integer.
    expires = principal.claims["exp"] + settings.JWT_LEEWAY_SECONDS
    _verified[key] = (principal, min(now + _VERIFIED_SECONDS, expires))
    return principal


def _verify_token(token: str) -> SupabasePrincipal:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as e:  # DecodeError, and a kid that is not a string
        raise exceptions.AuthenticationFailed("The access token is malformed.") from e
    alg = header.get("alg")
    key: Any
    if alg in ASYMMETRIC_ALGORITHMS:
        key = _jwks_signing_key(header, str(alg))
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
    # PyJWT turns numeric strings into numbers for its own checks: "exp": "9999999999" passes
    # there. RFC 7519 section 2 says NumericDate, a JSON number.
    for name in ("exp", "iat", "nbf"):
        if name in claims and not _is_number(claims[name]):
            raise exceptions.AuthenticationFailed(f"The access token's {name} is not a number.")

    role = claims.get("role")
    if role == SERVICE_ROLE:
        # Supabase's service keys carry iss "supabase" (and live ten years, so no lifetime cap:
        # rotating the project's JWT secret is how one is revoked).
        if claims.get("iss") not in (LEGACY_ISSUER, expected_issuer()):
            raise exceptions.AuthenticationFailed(
                "The service-role token was issued by another project."
            )
        return SupabasePrincipal(user_id=None, role=SERVICE_ROLE, claims=claims)
    if role != AUTHENTICATED:
        raise exceptions.AuthenticationFailed(
            "This API needs a signed-in user's access token (role 'authenticated')."
        )
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if AUTHENTICATED not in audiences:
        raise exceptions.AuthenticationFailed("The access token's audience is not accepted.")
    if claims.get("iss") != expected_issuer():
        raise exceptions.AuthenticationFailed("The access token was issued by another project.")
    # Compared, never subtracted: exp may be a 400-digit integer, which float() cannot hold.
    issued = claims.get("iat", time.time())
    if claims["exp"] > issued + settings.JWT_MAX_LIFETIME_SECONDS + settings.JWT_LEEWAY_SECONDS:
        raise exceptions.AuthenticationFailed(
            f"The access token lives longer than {settings.JWT_MAX_LIFETIME_SECONDS} s."
        )
    try:
        user_id = normalize_user_id(claims.get("sub"))
    except InvalidUserId as e:
        raise exceptions.AuthenticationFailed("The access token has no valid subject.") from e
    return SupabasePrincipal(user_id=user_id, role=AUTHENTICATED, claims=claims)


def _is_number(value: object) -> bool:
    # PyJWT already refused infinities and NaN (they are not integers to it).
    return isinstance(value, int | float) and not isinstance(value, bool)


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
    """One supabase-py client per process, never signed in (supabase-py's advice: create once with
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
        claims = {"iss": LEGACY_ISSUER, "role": SERVICE_ROLE, "iat": now, "exp": now + ttl_seconds}
    else:
        if user_id is None:
            raise ValueError("a user token needs a user_id")
        claims = {
            "iss": expected_issuer(),
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
