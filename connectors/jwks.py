"""The project's signing keys (JWKS), cached per process and kept through outages.

PyJWKClient holds its lock across the fetch and remembers no failure. Here a fresh key set is used
without a lock; one thread fetches at a time; after a failure or an unknown `kid` the next fetch
waits JWKS_REFRESH_COOLDOWN_SECONDS; while fetches fail, the last good set keeps verifying for
JWKS_STALE_IF_ERROR_SECONDS past its TTL; no request waits longer than JWKS_TIMEOUT in all.
See docs/architecture.md ("Authentication").
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK, PyJWKSet

from connectors import outbound

_MAX_JWKS_BYTES = 256 * 1024


class KeySetUnavailable(Exception):
    """No key set that may still be used, and the JWKS could not be fetched."""


class UnknownSigningKey(Exception):
    """The key set (fresh, or fetched again within the cool-down) has no such `kid`."""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    keys: dict[str, PyJWK]
    fetched_at: float  # time.monotonic()


class KeySetCache:
    def __init__(
        self, url: str, *, ttl: float, stale_if_error: float, timeout: float, cooldown: float
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.stale_if_error = stale_if_error
        self.timeout = timeout
        self.cooldown = cooldown
        self._snapshot: _Snapshot | None = None
        self._attempted_at = float("-inf")
        self._fetching = threading.Lock()

    def signing_key(self, kid: str) -> PyJWK:
        started = time.monotonic()
        fresh = self._snapshot
        if fresh is not None and started - fresh.fetched_at < self.ttl and kid in fresh.keys:
            return fresh.keys[kid]
        usable = self._usable(started)
        if usable is not None and kid in usable.keys:
            # Expired but still usable: refresh if nobody else is, never wait for it.
            if self._fetching.acquire(blocking=False):
                try:
                    self._fetch_if_allowed(started + self.timeout)
                finally:
                    self._fetching.release()
            return self._lookup(kid, time.monotonic(), fallback=usable)
        # Nothing usable holds this kid (cold start, rotation, or stale for too long): wait for
        # a fetch, ours or the one in flight, within this request's budget.
        if self._fetching.acquire(timeout=self.timeout):
            try:
                if self._attempted_at < started:  # nobody fetched while we waited
                    self._fetch_if_allowed(started + self.timeout)
            finally:
                self._fetching.release()
        return self._lookup(kid, time.monotonic(), fallback=None)

    def _usable(self, now: float) -> _Snapshot | None:
        snapshot = self._snapshot
        if snapshot is None or now - snapshot.fetched_at >= self.ttl + self.stale_if_error:
            return None
        return snapshot

    def _lookup(self, kid: str, now: float, *, fallback: _Snapshot | None) -> PyJWK:
        usable = self._usable(now) or fallback
        if usable is None:
            raise KeySetUnavailable(f"The key set at {self.url} could not be fetched.")
        if kid not in usable.keys:
            raise UnknownSigningKey(kid)
        return usable.keys[kid]

    def _fetch_if_allowed(self, expires: float) -> None:
        now = time.monotonic()
        snapshot = self._snapshot
        # A set that expired after a good fetch is refreshed at once; anything else (an
        # unknown kid, a failed fetch) waits for the cool-down since the last attempt.
        due = (
            snapshot is not None
            and snapshot.fetched_at >= self._attempted_at
            and now - snapshot.fetched_at >= self.ttl
        )
        if (not due and now - self._attempted_at < self.cooldown) or expires <= now:
            return
        self._attempted_at = now
        try:
            keys = self._fetch(expires - now)
        except (outbound.OutboundError, ValueError):
            return  # the last good set, if any, stays; the cool-down spaces the next attempt
        self._snapshot = _Snapshot(keys, time.monotonic())

    def _fetch(self, deadline: float) -> dict[str, PyJWK]:
        response = outbound.request(
            "GET",
            self.url,
            headers={"Accept": "application/json"},
            deadline=deadline,
            max_body_bytes=_MAX_JWKS_BYTES,
        )
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        document: Any = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWK Set")
        try:
            key_set = PyJWKSet.from_dict(document)
        except jwt.PyJWKSetError:
            return {}  # a well-formed set without a usable key: every kid is unknown
        # As PyJWKClient: signing keys with a kid; a key removed from the set stops verifying.
        return {
            key.key_id: key
            for key in key_set.keys
            if key.key_id and key.public_key_use in ("sig", None)
        }
