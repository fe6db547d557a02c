"""The providers' APIs and token endpoints, as one real HTTP server on 127.0.0.1.

Each provider lives under /<provider>/ (its API root, PROVIDER_API_BASE_<NAME>) with its token
endpoint at /<provider>/token. An Account is one user's data at a provider: its tokens, how many
items it has, and what should go wrong (an expired token, 5xx answers, a spent quota, a
redirect, a slow-drip body, a page held until the test lets it go). Pages: provider_pages.py.

`python -m tests.support.providers --port 8001` serves every token with 25 items per provider
(what `make run` points the service at, so a newcomer's sync finishes).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.provider_pages import (
    PAGES,
    PROVIDER_TEXT,
    UNAUTHORIZED,
    quota_headers,
    throttled,
)


@dataclass
class Account:
    provider: str
    items: int
    access_token: str = field(default_factory=lambda: f"access-{uuid.uuid4().hex}")
    refresh_token: str = field(default_factory=lambda: f"refresh-{uuid.uuid4().hex}")
    expired: bool = False  # the access token answers 401 until it is refreshed
    refresh_refused: bool = False  # the token endpoint answers invalid_grant
    fail_first: int = 0  # the first N API requests answer 503
    throttle_for: int | None = None  # every API request answers "limit spent, N s to reset"
    remaining: int | None = None  # quota reported (and counted down); None: no headers
    reset_in: int = 120
    redirect_to: str | None = None  # answer 302 to this URL
    next_link_to: str | None = None  # GitHub: rel="next" points here instead
    drip_seconds: float = 0.0  # seconds between two bytes of the body
    hold_page: int | None = None  # hold the N-th API request (1-based) until `release` is set
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[str] = field(default_factory=list)

    @property
    def api_requests(self) -> int:
        return len(self.requests)


class FakeProviders:
    def __init__(self, *, page_size: int = 3, latency: float = 0.0, any_token_items: int = 0):
        self.page_size = page_size
        self.latency = latency
        self.any_token_items = any_token_items  # > 0: any unknown token is an account
        self.accounts: dict[str, Account] = {}
        self.token_requests: list[dict[str, Any]] = []
        self.hits: list[str] = []  # every request's path, whoever sent it
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeProviders:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for account in list(self.accounts.values()):
            account.release.set()
        self.server.shutdown()
        self.server.server_close()

    def api_base(self, provider: str) -> str:
        return f"{self.base}/{provider}"

    def env(self) -> dict[str, str]:
        """Settings that point the service at this server, for every provider."""
        env: dict[str, str] = {}
        for provider in PAGES:
            upper = provider.upper()
            env[f"PROVIDER_API_BASE_{upper}"] = self.api_base(provider)
            env[f"OAUTH_{upper}_CLIENT_ID"] = f"{provider}-client"
            env[f"OAUTH_{upper}_CLIENT_SECRET"] = f"{provider}-secret"
            env[f"OAUTH_{upper}_TOKEN_URL"] = f"{self.api_base(provider)}/token"
        return env

    def account(self, provider: str, items: int = 7, **scenario: Any) -> Account:
        account = Account(provider, items, **scenario)
        with self.lock:
            self.accounts[account.access_token] = account
            self.accounts[account.refresh_token] = account
        return account

    def refresh_requests(self, account: Account) -> list[dict[str, Any]]:
        return [r for r in self.token_requests if r["account"] is account]

    def _find(self, provider: str, token: str) -> Account | None:
        with self.lock:
            account = self.accounts.get(token)
            if account is None and self.any_token_items and token:
                account = Account(provider, self.any_token_items, access_token=token)
                self.accounts[token] = account
        return account if account is not None and account.provider == provider else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.hits.append(self.path)
                parts = urlsplit(self.path)
                provider, _, rest = parts.path.lstrip("/").partition("/")
                if provider not in PAGES or "/" + rest != PAGES[provider][0]:
                    return self.answer(404, {}, {"message": "Not Found"})
                auth = self.headers.get("Authorization", "")
                token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else ""
                account = fake._find(provider, token)
                if account is None or (account.expired and token == account.access_token):
                    return self.answer(401, {}, UNAUTHORIZED[provider])
                account.requests.append(self.path)
                time.sleep(fake.latency)
                if account.hold_page == account.api_requests:
                    account.held.set()
                    account.release.wait(30)
                if account.api_requests <= account.fail_first:
                    return self.answer(503, {}, {"message": f"Service Unavailable {PROVIDER_TEXT}"})
                if account.throttle_for is not None:
                    return self.answer(*throttled(provider, account.throttle_for))
                if account.redirect_to:
                    return self.answer(302, {"Location": account.redirect_to}, b"")
                root = fake.api_base(provider)
                query = dict(parse_qsl(parts.query))
                status, headers, body = PAGES[provider][1](
                    account.items, query, root, fake.page_size
                )
                if account.remaining is not None:
                    account.remaining = max(0, account.remaining - 1)
                    headers |= quota_headers(provider, account.remaining, account.reset_in)
                if account.next_link_to:
                    headers["Link"] = f'<{account.next_link_to}>; rel="next"'
                return self.answer(status, headers, body, drip=account.drip_seconds)

            def do_POST(self) -> None:
                fake.hits.append(self.path)
                provider, _, rest = urlsplit(self.path).path.lstrip("/").partition("/")
                length = int(self.headers.get("Content-Length", 0))
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                account = fake._find(provider, form.get("refresh_token", ""))
                fake.token_requests.append(
                    {
                        "provider": provider,
                        "form": form,
                        "account": account,
                        "authorization": self.headers.get("Authorization"),
                    }
                )
                if rest != "token" or form.get("grant_type") != "refresh_token":
                    return self.answer(400, {}, {"error": "unsupported_grant_type"})
                if account is None or account.refresh_refused or account.provider != provider:
                    error = {"error": "invalid_grant", "error_description": PROVIDER_TEXT}
                    return self.answer(400, {}, error)
                with fake.lock:
                    account.access_token = f"access-{uuid.uuid4().hex}"
                    account.expired = False
                    fake.accounts[account.access_token] = account
                tokens = {
                    "access_token": account.access_token,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": "read",
                }
                return self.answer(200, {}, tokens)

            def answer(
                self, status: int, headers: dict[str, str], body: Any, drip: float = 0
            ) -> None:
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    if not drip:
                        self.wfile.write(payload)
                        return
                    for byte in payload:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(drip)
                except OSError:
                    pass  # the client hung up (a deadline, a killed worker)

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--items", type=int, default=25, help="items per account")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per response")
    args = parser.parse_args()
    fake = FakeProviders(page_size=10, latency=args.latency, any_token_items=args.items)
    fake.server.server_close()
    fake.server = ThreadingHTTPServer(("127.0.0.1", args.port), fake._handler())
    fake.server.daemon_threads = True
    fake.base = f"http://127.0.0.1:{args.port}"
    print(f"Stand-in provider APIs on {fake.base}/<provider>/", flush=True)
    fake.server.serve_forever()


if __name__ == "__main__":
    main()
