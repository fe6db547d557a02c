"""The stored entry format: a MAC line, a one-line JSON header, then the document's JSON bytes.

An entry is served only if its MAC (HMAC-SHA256, keyed from the server's secret, never stored in
Redis) verifies over the Redis key, the header and the document, the header and the document name
the key's owner, and it is at most MAX_ENTRY_BYTES long: anyone who can write to the Redis can
delete entries, never make the API serve something else. A hit sends the document's bytes as they
are (no decode, no re-encode). See docs/architecture.md ("Keys and the stored entry").
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from connectors.cache.keys import Slot, ttl_seconds
from connectors.errors import CacheKeyUnreadable, CacheUnavailable

logger = logging.getLogger("connectors.cache")

SCHEMA_VERSION = 3
# A status document is about 1.2 KB; nothing this service stores comes near this. Reads ask
# Redis for at most this many bytes (plus one, to tell a longer value), so a planted 30 MB value
# is never even transferred.
MAX_ENTRY_BYTES = 64 * 1024
_MAC_BYTES = 16  # 128 bits, hex-encoded on the entry's first line


@functools.lru_cache(maxsize=4)
def _mac_key(secret: str) -> bytes:
    # Derived, so the Django secret itself never keys anything but what Django uses it for.
    return hashlib.sha256(b"connectors.cache.entry\x00" + secret.encode()).digest()


def _mac(key: str, signed: bytes) -> bytes:
    digest = hmac.digest(_mac_key(settings.SECRET_KEY), key.encode() + b"\x00" + signed, "sha256")
    return digest[:_MAC_BYTES].hex().encode()


def _owner_prefix(slot: Slot) -> bytes:
    # The documents are built with their owner first: {"user_id": ...} for a status, {"id": ...}
    # for a job. Checking the prefix costs nothing, parsing the document would.
    field = "id" if slot.kind == "extraction_job" else "user_id"
    return f'{{"{field}":"{slot.ident}"'.encode()


def dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def etag_of(body: bytes) -> str:
    # The document carries every row's DB-assigned version, so any committed write changes it.
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


class CachedRead:
    """What a read-through returns: the document as JSON bytes, ready to be sent as they are.

    `data` decodes it on demand, for callers that need to look inside.
    """

    __slots__ = ("_data", "body", "cached", "etag", "stale")

    def __init__(
        self,
        body: bytes,
        *,
        cached: bool,
        etag: str,
        stale: bool = False,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.body = body
        self.cached = cached
        self.etag = etag
        # Served past its TTL because the database could not be asked (RFC 5861 stale-if-error).
        self.stale = stale
        self._data = data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> CachedRead:
        body = dumps(data)
        return cls(body, cached=False, etag=etag_of(body), data=data)

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.body)
        return self._data


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    etag: str
    delta: float  # seconds the fill took (XFetch's recompute time)
    expires_at: float

    def served(self, *, stale: bool = False) -> CachedRead:
        return CachedRead(self.body, cached=True, etag=self.etag, stale=stale)


@dataclass(frozen=True, slots=True)
class Counter:
    """A rate-limit counter for counted_read_platform_status(): its key as stored, window
    and limit."""

    key: str
    window: int
    limit: int


@dataclass(frozen=True, slots=True)
class Prefetched:
    """An entry read ahead by counted_read_platform_status(), for the read path to use
    instead of its own GET: the value (None: missing), or the error that GET would have met."""

    key: str
    raw: bytes | None = None
    error: CacheUnavailable | CacheKeyUnreadable | None = None
    # Set when prefetched_hit() declined to serve it: the entry as it decoded (None: rejected,
    # already logged and counted) and XFetch's draw, so the read path does neither again.
    checked: bool = False
    entry: Entry | None = None
    refresh: bool = False


# (count, PTTL in ms) per counter, as INCR and PTTL answered them; a count that is not an int
# means the counter is broken (not a number), None that Redis could not be asked.
CounterReplies = list[tuple[Any, Any]] | None


def encode(slot: Slot, key: str, body: bytes, etag: str, fill_seconds: float) -> bytes:
    """The value to store under the Redis key `key` (prefixed, as stored)."""
    # Compact JSON never contains a raw newline, so the first two end the MAC and the header.
    header = {
        "s": SCHEMA_VERSION,
        "k": slot.ident,
        "etag": etag,
        "delta": round(fill_seconds, 6),
        "exp": round(time.time() + ttl_seconds(slot.kind), 3),
    }
    return seal(key, header, body)


def seal(key: str, header: dict[str, Any], body: bytes) -> bytes:
    """Header and document, with the MAC line that makes them servable under `key`."""
    signed = json.dumps(header, separators=(",", ":")).encode() + b"\n" + body
    return _mac(key, signed) + b"\n" + signed


class Rejected(ValueError):
    """A stored value that must not be served."""


def decode(raw: bytes | str, slot: Slot, key: str) -> Entry | None:
    """The entry stored under `key`, or None if it is not one this server wrote for that key
    (forged, moved from another key, truncated, oversized, an old schema)."""
    try:
        if isinstance(raw, str):
            raw = raw.encode()
        if len(raw) > MAX_ENTRY_BYTES:
            raise Rejected(f"longer than {MAX_ENTRY_BYTES} bytes")
        mac, separator, signed = raw.partition(b"\n")
        if not separator or not hmac.compare_digest(mac, _mac(key, signed)):
            raise Rejected("MAC does not verify")
        header_bytes, _, body = signed.partition(b"\n")
        header = json.loads(header_bytes)
        if header["s"] != SCHEMA_VERSION or header["k"] != slot.ident:
            raise Rejected("schema or owner mismatch")
        if not body.startswith(_owner_prefix(slot)):
            raise Rejected("the document belongs to someone else")
        return Entry(body, header["etag"], float(header["delta"]), float(header["exp"]))
    except (ValueError, KeyError, TypeError) as e:
        logger.warning("Discarding unreadable %s entry (%s)", slot.describe(), e)
        return None
