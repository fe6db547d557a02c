"""Real HTTP servers on 127.0.0.1 standing in for the internet (OAuth providers, Supabase Auth,
JWKS): the code under test talks HTTP to them as it would to the real thing."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class JSONHandler(BaseHTTPRequestHandler):
    """Base for the local stand-ins: JSON answers, no logs."""

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def local_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free port for the duration; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval: shutdown() waits up to one interval, at every test's teardown.
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class FakeProvider:
    """An OAuth provider's token endpoint. `reply` decides what the next exchange gets back;
    `requests` records every exchange (form fields and headers)."""

    url: str = ""
    base: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply: tuple[int, Any] = (200, {})
    reply_headers: dict[str, str] = field(default_factory=dict)
    # Seconds between two bytes of the body (0: all at once), and before answering at all.
    drip_seconds: float = 0.0
    delay_seconds: float = 0.0

    def answer(self, status: int, body: Any) -> None:
        self.reply = (status, body)

    def succeed(self, **extra: Any) -> dict[str, Any]:
        tokens = {
            "access_token": f"prov-access-{uuid.uuid4().hex}",
            "refresh_token": f"prov-refresh-{uuid.uuid4().hex}",
            "expires_in": 3600,
            "scope": "read:user",
            "token_type": "bearer",
            **extra,
        }
        self.answer(200, tokens)
        return tokens

    def client_settings(self, name: str) -> dict[str, str]:
        """An OAUTH_CLIENTS entry that sends `name`'s token exchanges here."""
        return {
            "client_id": f"{name}-client",
            "client_secret": f"{name}-secret",
            "token_url": self.url,
            "authorize_url": f"{self.base}/authorize",
        }

    @classmethod
    @contextlib.contextmanager
    def serving(cls) -> Iterator[FakeProvider]:
        provider = cls()

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                provider.requests.append(
                    {"form": {k: v[0] for k, v in form.items()}, "headers": dict(self.headers)}
                )
                time.sleep(provider.delay_seconds)
                if provider.drip_seconds:
                    self.drip(*provider.reply)
                else:
                    self.send_json(*provider.reply, headers=provider.reply_headers)

            def drip(self, status: int, body: Any) -> None:
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    for byte in payload:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(provider.drip_seconds)
                except OSError:
                    pass  # the client hung up

        with local_http_server(Handler) as base:
            provider.base, provider.url = base, f"{base}/token"
            yield provider
