"""Access-token claims shaped like Supabase's, for tests that sign their own (forged, expired,
another issuer, ...) rather than take issue_token()'s."""

from __future__ import annotations

import time
from typing import Any


def user_claims(user_id: str, *, issuer: str = "supabase", **overrides: Any) -> dict[str, Any]:
    """A signed-in user's claims, valid for ten minutes; an override of None drops the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": "authenticated",
        "role": "authenticated",
        "sub": user_id,
        "iat": now,
        "exp": now + 600,
        **overrides,
    }
    return {name: value for name, value in claims.items() if value is not None}
