"""The OAuth 2.0 authorization-code flow against the registry's providers.

`state` is signed with the project's secret, names the user and the provider, and expires after
ten minutes, so a callback cannot be replayed for another user or platform. PKCE (RFC 7636, S256)
is used where the provider supports it; its verifier is derived from the state's nonce with an
HMAC, so nothing has to be stored between the two legs. The token endpoint is called through
connectors.outbound: no redirect followed, one deadline, a bounded body, https only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.utils import timezone

from connectors import outbound
from connectors.errors import (
    InvalidOAuthState,
    OAuthExchangeFailed,
    OAuthExchangeRedirected,
    ProviderNotConfigured,
    ProviderUnavailable,
)
from connectors.providers import Provider

STATE_SALT = "connectors.oauth.state"
STATE_MAX_AGE_SECONDS = 600
_MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
# A provider's expires_in is clamped to this (a year): 10**12 or 1e308 means "no time soon", and
# would overflow a datetime. The token is then refreshed a year on, at the latest.
MAX_EXPIRES_IN_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scopes: list[str]

    def __repr__(self) -> str:  # never let a token reach a log line or a traceback
        return f"TokenSet(expires_at={self.expires_at!r}, scopes={self.scopes!r})"


def state_issue(*, user_id: str, provider: Provider) -> str:
    return signing.dumps(
        {"u": user_id, "p": provider.name, "n": secrets.token_urlsafe(16)}, salt=STATE_SALT
    )


def state_verify(*, state: str, user_id: str, provider: Provider) -> str:
    """Check the state and return its nonce."""
    try:
        payload = signing.loads(state, salt=STATE_SALT, max_age=STATE_MAX_AGE_SECONDS)
    except signing.SignatureExpired as e:
        raise InvalidOAuthState("The OAuth state has expired; start the connection again.") from e
    except signing.BadSignature as e:
        raise InvalidOAuthState("The OAuth state is not valid.") from e
    if (
        not isinstance(payload, dict)
        or payload.get("u") != user_id
        or payload.get("p") != provider.name
    ):
        raise InvalidOAuthState("The OAuth state was issued for another user or provider.")
    return str(payload["n"])


def _pkce_verifier(nonce: str) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), f"pkce:{nonce}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def _pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _require_client(provider: Provider) -> None:
    if not provider.client_id:
        raise ProviderNotConfigured(
            f"{provider.display_name} is not configured on this server "
            f"(set OAUTH_{provider.name.upper()}_CLIENT_ID and _CLIENT_SECRET)."
        )


def authorization_url(*, user_id: str, provider: Provider) -> tuple[str, str]:
    """The provider's consent URL for this user, and the state it carries."""
    _require_client(provider)
    state = state_issue(user_id=user_id, provider=provider)
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": settings.OAUTH_REDIRECT_URI,
        "scope": " ".join(provider.scopes),
        "state": state,
    }
    if provider.supports_pkce:
        nonce = signing.loads(state, salt=STATE_SALT)["n"]
        params["code_challenge"] = _pkce_challenge(_pkce_verifier(nonce))
        params["code_challenge_method"] = "S256"
    return f"{provider.effective_authorize_url}?{urllib.parse.urlencode(params)}", state


def exchange_code(*, provider: Provider, code: str, nonce: str) -> TokenSet:
    """Trade an authorization code for tokens at the provider's token endpoint."""
    _require_client(provider)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": settings.OAUTH_REDIRECT_URI,
        "client_id": provider.client_id,
    }
    if provider.supports_pkce:
        form["code_verifier"] = _pkce_verifier(nonce)
    headers = client_authentication(provider, form)
    try:
        response = outbound.request(
            "POST",
            provider.effective_token_url,
            headers=headers,
            form=form,
            deadline=settings.OAUTH_HTTP_TIMEOUT,
            max_body_bytes=_MAX_TOKEN_RESPONSE_BYTES,
        )
    except outbound.InsecureURL as e:
        raise ProviderNotConfigured(
            f"{provider.display_name}'s token URL is not https; fix "
            f"OAUTH_{provider.name.upper()}_TOKEN_URL."
        ) from e
    except outbound.OutboundError as e:
        raise ProviderUnavailable(
            f"{provider.display_name} could not be reached; try again shortly."
        ) from e
    if response.is_redirect:
        # Never followed: a redirect would carry the client secret (and the code) to whatever
        # host the Location names.
        raise OAuthExchangeRedirected(
            f"{provider.display_name}'s token endpoint answered with a redirect, which is "
            "never followed; start the connection again."
        )
    if response.status >= 400:
        _raise_for_provider_error(provider, response.status, response.body)
    body = response.body
    return _parse_token_response(provider, body)


# RFC 6749 section 5.2 and the non-standard codes of the registry's providers (GitHub answers a
# bad code with HTTP 200 and "bad_verification_code").
KNOWN_ERROR_CODES = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
        "slow_down",
        "expired_token",
        "bad_verification_code",
        "incorrect_client_credentials",
        "redirect_uri_mismatch",
    }
)


def _provider_error_code(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return "unknown_error"
    # Only a known machine-readable code reaches our error: never the provider's free text, and
    # never an arbitrary string, which could be anything the provider echoed (even a token).
    return error if isinstance(error, str) and error in KNOWN_ERROR_CODES else "unknown_error"


def _raise_for_provider_error(provider: Provider, status: int, body: bytes) -> None:
    if 400 <= status < 500:
        raise OAuthExchangeFailed(
            f"{provider.display_name} refused the authorization code "
            f"({_provider_error_code(body)}); start the connection again."
        )
    raise ProviderUnavailable(f"{provider.display_name} answered HTTP {status}; try again shortly.")


def _parse_token_response(provider: Provider, body: bytes) -> TokenSet:
    try:
        payload: Any = json.loads(body)
    except ValueError as e:
        raise ProviderUnavailable(
            f"{provider.display_name} sent an unreadable token response."
        ) from e
    if not isinstance(payload, dict):
        raise ProviderUnavailable(f"{provider.display_name} sent an unreadable token response.")
    if "error" in payload:  # GitHub reports a bad code with HTTP 200
        raise OAuthExchangeFailed(
            f"{provider.display_name} refused the authorization code "
            f"({_provider_error_code(body)}); start the connection again."
        )
    tokens = tokens_from(provider, payload)
    if tokens is None:
        raise ProviderUnavailable(f"{provider.display_name} sent no access token.")
    return tokens


def client_authentication(provider: Provider, form: dict[str, str]) -> dict[str, str]:
    """The headers of a request to `provider`'s token endpoint, the client authenticated as the
    provider wants (RFC 6749 section 2.3.1): HTTP Basic, or the secret added to `form`."""
    headers = {"Accept": "application/json"}
    if provider.client_auth_method == "basic":
        basic = f"{provider.client_id}:{provider.client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
    else:
        form["client_secret"] = provider.client_secret
    return headers


def tokens_from(provider: Provider, payload: dict[str, Any]) -> TokenSet | None:
    """The tokens in a token endpoint's JSON answer (code exchange or refresh); None if it holds
    no access token."""
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        return None
    refresh_token = payload.get("refresh_token")
    expires_in = payload.get("expires_in")
    expires_at = None
    # NaN fails `> 0`; infinity and a 400-digit integer compare fine and are clamped before
    # float() or timedelta() could overflow.
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        seconds = MAX_EXPIRES_IN_SECONDS if expires_in > MAX_EXPIRES_IN_SECONDS else expires_in
        expires_at = timezone.now() + timedelta(seconds=float(seconds))
    scope = payload.get("scope")
    scopes = scope.replace(",", " ").split() if isinstance(scope, str) else list(provider.scopes)
    return TokenSet(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_at=expires_at,
        scopes=scopes,
    )
