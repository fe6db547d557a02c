"""connectors.outbound against real servers on 127.0.0.1: redirects, deadlines, size, policy."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connectors import outbound
from tests.support.procs import free_port
from tests.support.servers import JSONHandler, local_http_server
from tests.support.tls import make_ca, server_certificate


@dataclass
class Target:
    """What the server does with the next request, and what it saw."""

    url: str = ""
    mode: str = "json"
    requests: list[dict[str, Any]] = field(default_factory=list)
    drip_seconds: float = 0.25
    drip_bytes: int = 40


@pytest.fixture
def target() -> Iterator[Target]:
    state = Target()

    class Handler(JSONHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": self.rfile.read(length) if length else b"",
                }
            )
            if self.path == "/stolen":
                self.send_json(200, {"access_token": "stolen"})
            elif state.mode == "redirect":
                self.send_response(302)
                self.send_header("Location", f"{state.url}/stolen")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif state.mode == "drip_body":
                self.send_response(200)
                self.send_header("Content-Length", str(state.drip_bytes))
                self.end_headers()
                self._drip(b"x" * state.drip_bytes)
            elif state.mode == "drip_headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self._drip(b"X-Slow: " + b"a" * state.drip_bytes + b"\r\n\r\n")
            elif state.mode == "big_declared":
                self.send_json(200, b"y" * 5000)
            elif state.mode == "big_chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for _ in range(10):
                    self.wfile.write(b"3e8\r\n" + b"z" * 1000 + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_response(201)
                self.send_header("Set-Cookie", "a=1")
                self.send_header("Set-Cookie", "b=2")
                payload = json.dumps({"ok": True}).encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        def _drip(self, data: bytes) -> None:
            try:
                for byte in data:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(state.drip_seconds)
            except OSError:
                pass  # the client gave up, as it should

        do_GET = do_POST = _handle

    with local_http_server(Handler) as url:
        state.url = url
        yield state


def call(url: str, **kwargs: Any) -> outbound.Response:
    return outbound.request(
        kwargs.pop("method", "POST"),
        url,
        deadline=kwargs.pop("deadline", 5.0),
        max_body_bytes=kwargs.pop("max_body_bytes", 64 * 1024),
        **kwargs,
    )


def test_it_sends_form_or_json_and_returns_status_headers_and_body(target):
    response = call(f"{target.url}/token", form={"code": "c d"}, headers={"Authorization": "x"})
    assert response.status == 201 and response.json() == {"ok": True}
    assert response.headers["set-cookie"] == "a=1, b=2"
    sent = target.requests[-1]
    assert sent["body"] == b"code=c+d"
    assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert sent["headers"]["authorization"] == "x"
    call(f"{target.url}/api", json={"a": [1]})
    assert json.loads(target.requests[-1]["body"]) == {"a": [1]}
    assert target.requests[-1]["headers"]["content-type"] == "application/json"


def test_a_redirect_is_returned_never_followed(target):
    target.mode = "redirect"
    response = call(f"{target.url}/token", headers={"Authorization": "Basic secret"})
    assert response.status == 302 and response.is_redirect
    assert response.headers["location"] == f"{target.url}/stolen"
    assert [r["path"] for r in target.requests] == ["/token"]


@pytest.mark.parametrize("mode", ["drip_body", "drip_headers"])
def test_one_deadline_bounds_the_whole_response_even_a_drip(target, mode):
    """40 bytes at 4 bytes/s would take 10 s; a per-read timeout never fires on a drip."""
    target.mode = mode
    started = time.monotonic()
    with pytest.raises(outbound.OutboundTimeout, match="did not answer within 1 s"):
        call(f"{target.url}/token", deadline=1.0)
    assert time.monotonic() - started < 4.0


def test_a_server_that_never_answers_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts (kernel backlog), never reads or answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/token"
        started = time.monotonic()
        with pytest.raises(outbound.OutboundTimeout):
            call(url, deadline=0.5)
        assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("mode", ["big_declared", "big_chunked"])
def test_a_body_over_the_bound_is_refused(target, mode):
    target.mode = mode
    with pytest.raises(outbound.ResponseTooLarge):
        call(f"{target.url}/token", max_body_bytes=4096)
    assert len(call(f"{target.url}/token", max_body_bytes=20_000).body) > 4096


def test_a_refused_connection_is_our_own_error():
    with pytest.raises(outbound.OutboundConnectionError, match=r"127\.0\.0\.1"):
        call(f"http://127.0.0.1:{free_port()}/token")


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/token",
        "http://10.0.0.1/token",
        "http://localhost.example/token",
        "ftp://127.0.0.1/token",
        "file:///etc/passwd",
        "https://user:pass@example.com/token",
        "/relative",
    ],
)
def test_only_https_or_loopback_http_is_called_outside_debug(url, settings):
    settings.DEBUG = False
    with pytest.raises(outbound.InsecureURL):
        outbound.check_url(url)


def test_loopback_http_and_any_https_pass_the_policy(settings):
    settings.DEBUG = False
    for url in ("https://example.com/x", "http://127.0.0.1:8/x", "http://[::1]:8/x"):
        outbound.check_url(url)
    settings.DEBUG = True
    outbound.check_url("http://mock-provider:8080/token")  # a compose service in development
    with pytest.raises(outbound.InsecureURL):
        outbound.check_url("gopher://127.0.0.1/")


@pytest.fixture
def https_target(tmp_path: Path, target: Target) -> Iterator[tuple[str, Path]]:
    """The same handler behind TLS, with a certificate from a CA made here."""
    ca_key, ca_cert, ca_path = make_ca(tmp_path, "outbound-test-ca")
    cert_path, key_path = server_certificate(tmp_path, ca_key, ca_cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    plain_port = int(target.url.rsplit(":", 1)[1])
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        stop = threading.Event()

        def relay() -> None:
            # TLS terminated here, bytes relayed to the plain handler: one handler, two schemes.
            while not stop.is_set():
                try:
                    raw, _ = listener.accept()
                except OSError:
                    return
                args = (context, raw, plain_port)
                threading.Thread(target=_relay, args=args, daemon=True).start()

        threading.Thread(target=relay, daemon=True).start()
        yield f"https://127.0.0.1:{listener.getsockname()[1]}", ca_path
        stop.set()


def _relay(context: ssl.SSLContext, raw: socket.socket, port: int) -> None:
    try:
        with (
            context.wrap_socket(raw, server_side=True) as tls,
            socket.create_connection(("127.0.0.1", port)) as plain,
        ):
            tls.settimeout(0.05)
            plain.settimeout(0.05)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                for source, sink in ((tls, plain), (plain, tls)):
                    try:
                        data = source.recv(65536)
                    except (TimeoutError, ssl.SSLWantReadError):
                        continue
                    if not data:
                        return
                    sink.sendall(data)
    except OSError:
        pass


def test_an_untrusted_certificate_is_refused(https_target):
    url, _ = https_target
    with pytest.raises(outbound.OutboundConnectionError) as refused:
        call(f"{url}/token")
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value.__cause__)


def test_https_works_and_its_deadline_holds_through_tls(https_target, target, monkeypatch):
    url, ca_path = https_target
    # OpenSSL's own knob for its default CA file: the test CA, trusted for this test only.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))
    outbound._ssl_context.cache_clear()
    try:
        assert call(f"{url}/token", form={"a": "b"}).json() == {"ok": True}
        target.mode = "drip_body"
        started = time.monotonic()
        with pytest.raises(outbound.OutboundTimeout):
            call(f"{url}/token", deadline=1.0)
        assert time.monotonic() - started < 4.0
    finally:
        monkeypatch.delenv("SSL_CERT_FILE")
        outbound._ssl_context.cache_clear()
