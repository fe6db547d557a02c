"""Supabase access tokens for DRF: `Authorization: Bearer <access token>`.

Users' tokens (role `authenticated`) must carry aud=authenticated, an unexpired exp and a UUID
`sub`; when SUPABASE_URL is set, iss must be `<SUPABASE_URL>/auth/v1`. The service-role key
(role `service_role`, iss `supabase`, no sub and no aud, as Supabase issues it) may act for any
user. `anon` tokens and anything else are refused. `user_metadata` is user-editable and is never
used for authorization (REFERENCES.md, Supabase).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

ALGORITHMS = ["HS256"]
SERVICE_ROLE = "service_role"
AUTHENTICATED = "authenticated"


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


def verify_token(token: str) -> SupabasePrincipal:
    """Verify a Supabase JWT, or raise AuthenticationFailed with a reason a client can act on."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as e:
        raise exceptions.AuthenticationFailed("The access token is malformed.") from e
    if header.get("alg") not in ALGORITHMS:
        # Refuses alg "none" and any algorithm this server is not configured for, before any key
        # is chosen (no algorithm confusion).
        raise exceptions.AuthenticationFailed("The access token's algorithm is not accepted.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.SUPABASE_JWT_SECRET,
            algorithms=ALGORITHMS,
            options={"require": ["exp"], "verify_aud": False},
            leeway=settings.JWT_LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError as e:
        raise exceptions.AuthenticationFailed("The access token has expired.") from e
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
    subject = claims.get("sub")
    try:
        user_id = str(uuid.UUID(subject)) if isinstance(subject, str) else None
    except ValueError:
        user_id = None
    if user_id is None:
        raise exceptions.AuthenticationFailed("The access token has no valid subject.")
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
        if len(token) > 8192:
            raise exceptions.AuthenticationFailed("The access token is malformed.")
        return verify_token(token), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="connectors"'


def issue_token(
    *,
    user_id: str | None,
    service_role: bool = False,
    ttl_seconds: int = 3600,
    email: str | None = None,
) -> str:
    """Sign a token the way Supabase does, with the configured HS256 secret (demos, tests)."""
    import time

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
    return jwt.encode(claims, settings.SUPABASE_JWT_SECRET, algorithm="HS256")
