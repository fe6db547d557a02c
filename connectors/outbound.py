"""Every call this service makes to the internet (OAuth token endpoints, the JWKS, provider APIs).

One policy: no redirect is ever followed (a 3xx is returned to the caller), one deadline bounds
connect + TLS + request + headers + body, the body is bounded, https is required (plain http
only to a loopback address, or anywhere with DEBUG), and failures are our own OutboundError.
Built on httpcore (httpx's transport) with a network backend that clamps every socket operation
to the time left: urllib's, urllib3's and httpx's timeouts all apply per read, so a server
dripping a byte a second never times out with them. Not bounded: the DNS lookup (getaddrinfo).
"""

from __future__ import annotations

import functools
import ipaddress
import json as jsonlib
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpcore
from django.conf import settings

USER_AGENT = "connectors-service"
_READ_CHUNK = 64 * 1024
_WRITE_CHUNK = 16 * 1024


class OutboundError(Exception):
    """An outbound request failed; the message names the host, never the query or a secret."""


class InsecureURL(OutboundError):
    """Refused before any connection: not https (and not loopback), or not an http(s) URL."""


class OutboundTimeout(OutboundError):
    """The deadline passed before the whole response was read."""


class OutboundConnectionError(OutboundError):
    """DNS, refused connection, TLS verification, or a broken HTTP exchange."""


class ResponseTooLarge(OutboundError):
    """The body is longer than the caller allows."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    # Lower-case names; a repeated header's values joined with ", " (RFC 9110 section 5.3).
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def is_redirect(self) -> bool:
        return 300 <= self.status < 400

    def json(self) -> Any:
        """The body as JSON (ValueError if it is not)."""
        return jsonlib.loads(self.body)


def check_url(url: str) -> None:
    """Raise InsecureURL unless `url` may be called under this process's policy."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InsecureURL(f"Not an http(s) URL: {parts.scheme!r} scheme.")
    if parts.username is not None or parts.password is not None:
        raise InsecureURL(f"Credentials in the URL of {parts.hostname} are not sent.")
    if parts.scheme == "http" and not (settings.DEBUG or is_loopback(parts.hostname)):
        raise InsecureURL(f"Plain http to {parts.hostname}: https is required.")


def is_loopback(host: str) -> bool:
    """A loopback IP literal: traffic to it never leaves the machine, so TLS protects nothing
    there (a local sidecar, the test suite's stand-ins). Names are not trusted to resolve."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def request(
    method: str,
    url: str,
    *,
    deadline: float,
    max_body_bytes: int,
    headers: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    json: Any = None,
) -> Response:
    """Send one request and read the whole response within `deadline` seconds.

    A 3xx is returned like any other status, never followed. Raises InsecureURL,
    OutboundTimeout, OutboundConnectionError or ResponseTooLarge.
    """
    check_url(url)
    host = urlsplit(url).hostname
    expires = time.monotonic() + deadline
    sent = dict(headers or {})
    content: bytes | None = None
    defaults = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if form is not None:
        content = urlencode(form).encode()
        defaults["Content-Type"] = "application/x-www-form-urlencoded"
    elif json is not None:
        content = jsonlib.dumps(json).encode()
        defaults["Content-Type"] = "application/json"
    names = {name.lower() for name in sent}
    sent.update({k: v for k, v in defaults.items() if k.lower() not in names})
    timeouts = {"connect": deadline, "read": deadline, "write": deadline, "pool": deadline}
    try:
        # One pool per call: a connection never outlives its request (and its deadline).
        with (
            httpcore.ConnectionPool(
                ssl_context=_ssl_context(),
                network_backend=_DeadlineBackend(expires),
                max_connections=1,
                retries=0,
            ) as pool,
            pool.stream(
                method.upper(),
                url,
                headers=list(sent.items()),
                content=content,
                extensions={"timeout": timeouts},
            ) as response,
        ):
            received = _headers(response.headers)
            declared = received.get("content-length", "")
            if declared.isdigit() and int(declared) > max_body_bytes:
                raise ResponseTooLarge(f"{host} sent more than {max_body_bytes} bytes.")
            body = _read_bounded(response.iter_stream(), max_body_bytes, host)
            return Response(status=response.status, headers=received, body=body)
    except httpcore.TimeoutException as e:
        raise OutboundTimeout(f"{host} did not answer within {deadline:g} s.") from e
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as e:
        raise OutboundConnectionError(f"{host} could not be reached ({type(e).__name__}).") from e
    except (ssl.SSLError, OSError) as e:  # raised outside httpcore's own mapping
        raise OutboundConnectionError(f"{host} could not be reached ({type(e).__name__}).") from e


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _read_bounded(chunks: Iterable[bytes], limit: int, host: str | None) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise ResponseTooLarge(f"{host} sent more than {limit} bytes.")
    return bytes(body)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # The system's CAs, certificate and host name verified; built once (loading CAs costs ms).
    return ssl.create_default_context()


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own socket backend, with every operation's timeout cut to the time left."""

    def __init__(self, expires: float) -> None:
        self._expires = expires
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(self._expires, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(
            host, port, timeout=left, local_address=local_address, socket_options=socket_options
        )
        return _DeadlineStream(stream, self._expires)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("Unix sockets are not used for outbound requests.")

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, max(0.0, self._expires - time.monotonic())))


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, expires: float) -> None:
        self._inner = inner
        self._expires = expires

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # One recv (or one TLS record) per call, and CPython bounds an SSL read by its
        # timeout as a whole: a drip is cut at the deadline, not renewed per byte.
        return self._inner.read(
            min(max_bytes, _READ_CHUNK), timeout=_left(self._expires, httpcore.ReadTimeout)
        )

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_CHUNK):
            self._inner.write(
                buffer[start : start + _WRITE_CHUNK],
                timeout=_left(self._expires, httpcore.WriteTimeout),
            )

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # The handshake is one call with one timeout, which CPython applies to it as a whole.
        stream = self._inner.start_tls(
            ssl_context, server_hostname, timeout=_left(self._expires, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream, self._expires)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _left(expires: float, timeout_error: type[Exception]) -> float:
    left = expires - time.monotonic()
    if left <= 0:
        # Never settimeout(0): that would make the socket non-blocking, not time out.
        raise timeout_error("deadline passed")
    return left
