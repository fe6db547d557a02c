"""The seed's own stack as a benchmark peer (bench/peers/express-seed/: Express 4, ioredis, pg,
Node's cluster): install it, run it on a free port, and check that it answers every user the
same document as this service before anything is timed.

Independent of the rest of bench/: the standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

PEER_DIR = Path(__file__).resolve().parent / "express-seed"
STATUS_PATH = "/api/connectors/status/"
MIN_NODE_MAJOR = 20
READY_LINE = "express-seed ready:"
# Written into node_modules after a successful `npm ci`: the lock file it was installed from.
_STAMP = PEER_DIR / "node_modules" / ".installed-from-lock.sha256"
_INSTALL_LOCK = PEER_DIR / ".npm-ci.lock"
# Only these reach the peer from the caller's environment: a stray SUPABASE_URL or REDIS_URL
# in the shell must not change what is measured.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


class PeerError(RuntimeError):
    """Node or npm is missing, `npm ci` failed, or the peer did not start."""


# --- Installation ------------------------------------------------------------------------------
def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PeerError(
            f"The Express peer needs Node.js >= {MIN_NODE_MAJOR} and npm, but `{name}` is not on "
            "the PATH. Install Node 20 (Debian/Ubuntu: NodeSource's nodejs package, which "
            "includes npm), then run this again."
        )
    return path


def node_binary() -> str:
    """The `node` on the PATH, or PeerError if it is missing or older than Node 20."""
    node = _tool("node")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    match = re.fullmatch(r"v(\d+)\..*", version)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        raise PeerError(
            f"The Express peer needs Node.js >= {MIN_NODE_MAJOR}; {node} is {version!r}."
        )
    return node


def _lock_digest() -> str:
    return hashlib.sha256((PEER_DIR / "package-lock.json").read_bytes()).hexdigest()


def installed() -> bool:
    """Whether node_modules holds exactly what package-lock.json pins."""
    return _STAMP.is_file() and _STAMP.read_text().strip() == _lock_digest()


def ensure_installed(*, timeout: float = 600.0) -> str:
    """Run `npm ci` in the peer's directory unless node_modules matches package-lock.json.

    Returns the node binary. Concurrent callers wait for one install (a file lock): two `npm ci`
    runs would delete each other's node_modules.
    """
    node = node_binary()
    npm = _tool("npm")
    with _INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():
            return node
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=PEER_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise PeerError(f"`npm ci` in {PEER_DIR} took more than {timeout:g} s") from e
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()[-30:]
            raise PeerError(
                f"`npm ci` in {PEER_DIR} failed ({result.returncode}):\n" + "\n".join(output)
            )
        _STAMP.write_text(_lock_digest() + "\n")
    return node


# --- Running it --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ExpressPeer:
    """One running peer: the Node cluster's primary and its workers, in their own process group.

    Use as a context manager, or call start() and stop(). `redis_url=None` runs it as the seed
    runs without Redis: every read from the database. Give each run a fresh `key_prefix`:
    the peer knows nothing of this service's writes, so an entry left by an earlier run would
    be served for up to 300 s.
    """

    database_url: str
    jwt_secret: str
    redis_url: str | None = None
    key_prefix: str = ""
    workers: int = 4
    pg_pool_max: int = 10
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, chosen at start()
    log_cache: bool = False  # the seed's "Cache HIT/MISS" lines, one per request
    log_path: Path | None = None  # default: a temporary file, removed by a clean stop()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _own_log: bool = field(default=False, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.update(
            NODE_ENV="production",
            HOST=self.host,
            PORT=str(self.port),
            WORKERS=str(self.workers),
            DATABASE_URL=self.database_url,
            PG_POOL_MAX=str(self.pg_pool_max),
            CACHE_KEY_PREFIX=self.key_prefix,
            SUPABASE_JWT_SECRET=self.jwt_secret,
            LOG_CACHE="1" if self.log_cache else "0",
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        return env

    def start(self, *, timeout: float = 30.0) -> Self:
        """Start it and wait until every worker listens and the route answers."""
        if self._proc is not None and self._proc.poll() is None:
            raise PeerError("this peer is already running")
        node = node_binary()
        if not installed():
            raise PeerError(f"{PEER_DIR} has no up-to-date node_modules: call ensure_installed()")
        if self.port == 0:
            self.port = free_port()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="express-seed-", suffix=".log")
            os.close(fd)
            self.log_path, self._own_log = Path(name), True
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [node, "server.js"],
                cwd=PEER_DIR,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals exactly it
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log():
            if self._proc.poll() is not None:
                raise PeerError(
                    f"the Express peer exited ({self._proc.returncode}) before it was ready:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise PeerError(
                    f"the Express peer was not ready after {timeout:g} s:\n" + self.log_tail()
                )
            time.sleep(0.05)
        # No token: the route must answer 401, which proves routing and authentication are up.
        with Client(timeout=5.0) as client:
            status = client.status(self.base_url, str(uuid.UUID(int=0)), None).status
        if status != 401:
            raise PeerError(f"the Express peer answered {status} without a token (expected 401)")

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Workers outlive a primary killed by SIGKILL only until they notice; make sure.
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path, self._own_log = None, False

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- Identical documents -----------------------------------------------------------------------
MismatchKind = Literal["request", "envelope", "document", "bytes"]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One user for whom the two stacks disagree.

    request: a transport error or a status other than 200; envelope: a body that is not
    {"success":true,"data":...,"cached":...}; document: the parsed `data` differ; bytes: the
    parsed documents are equal but their compact JSON bytes are not (key order, formatting).
    """

    user_id: str
    kind: MismatchKind
    detail: str


# The compact envelope both stacks write; the service may add "stale" (served past its TTL).
_ENVELOPE = re.compile(
    rb'\{"success":true,"data":(?P<data>.*),"cached":(?:true|false)(?:,"stale":true)?\}', re.S
)
_RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class Client:
    """Keep-alive GETs for one thread, one connection per server; http.client reopens a
    connection by itself after a server that closes each one (gunicorn's sync worker)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._connections: dict[str, http.client.HTTPConnection] = {}

    def _connection(self, base_url: str) -> http.client.HTTPConnection:
        conn = self._connections.get(base_url)
        if conn is None:
            parts = urlsplit(base_url)
            if parts.scheme != "http" or parts.hostname is None:
                raise ValueError(f"expected an http:// base URL, got {base_url!r}")
            conn = http.client.HTTPConnection(
                parts.hostname, parts.port or 80, timeout=self.timeout
            )
            self._connections[base_url] = conn
        return conn

    def get(self, base_url: str, path: str, *, authorization: str | None = None) -> Answer:
        headers = {"Authorization": authorization} if authorization is not None else {}
        path = urlsplit(base_url).path.rstrip("/") + path
        conn = self._connection(base_url)
        for attempt in (1, 2):
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                return Answer(
                    response.status, {k.lower(): v for k, v in response.getheaders()}, body
                )
            except _RETRYABLE:
                # The server closed an idle keep-alive connection as this request went out.
                conn.close()
                if attempt == 2:
                    raise
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    def status(self, base_url: str, user_id: str, token: str | None) -> Answer:
        """GET the status document of `user_id` with `token` (no Authorization header if None)."""
        return self.get(
            base_url, f"{STATUS_PATH}{user_id}", authorization=f"Bearer {token}" if token else None
        )

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _first_difference(peer: Any, ours: Any, path: str = "data") -> str:
    if isinstance(peer, dict) and isinstance(ours, dict):
        for key in list(ours) + [k for k in peer if k not in ours]:
            if key not in peer or key not in ours:
                side = "the peer" if key not in peer else "the service"
                return f"{path}.{key}: missing from {side}"
            if peer[key] != ours[key] or type(peer[key]) is not type(ours[key]):
                return _first_difference(peer[key], ours[key], f"{path}.{key}")
    return f"{path}: peer {peer!r} != service {ours!r}"


def _canonical(data: Any) -> str:
    # Unlike ==, tells 1 from 1.0 and True from 1; key order is left to the bytes check.
    return json.dumps(data, sort_keys=True)


def _document(body: bytes) -> tuple[Any, bytes | None]:
    """The envelope's parsed `data` and its raw bytes (None if the envelope is not compact)."""
    envelope = json.loads(body)
    if not (
        isinstance(envelope, dict)
        and envelope.get("success") is True
        and "data" in envelope
        and isinstance(envelope.get("cached"), bool)
    ):
        raise ValueError(f"not a success envelope: {body[:200]!r}")
    match = _ENVELOPE.fullmatch(body)
    return envelope["data"], match.group("data") if match else None


def _compare_one(
    client: Client, user_id: str, peer_base_url: str, service_base_url: str, token: str
) -> Mismatch | None:
    answers: dict[str, Answer] = {}
    for side, base in (("peer", peer_base_url), ("service", service_base_url)):
        try:
            answers[side] = client.status(base, user_id, token)
        except (OSError, http.client.HTTPException) as e:
            return Mismatch(user_id, "request", f"{side}: {e.__class__.__name__}: {e}")
    for side, answer in answers.items():
        if answer.status != 200:
            return Mismatch(
                user_id, "request", f"{side} answered {answer.status}: {answer.body[:200]!r}"
            )
    try:
        peer_data, peer_raw = _document(answers["peer"].body)
    except ValueError as e:
        return Mismatch(user_id, "envelope", f"peer: {e}")
    try:
        our_data, our_raw = _document(answers["service"].body)
    except ValueError as e:
        return Mismatch(user_id, "envelope", f"service: {e}")
    if peer_data != our_data or _canonical(peer_data) != _canonical(our_data):
        return Mismatch(user_id, "document", _first_difference(peer_data, our_data))
    if peer_raw is None or our_raw is None or peer_raw != our_raw:
        return Mismatch(
            user_id,
            "bytes",
            "same document, different bytes (key order or formatting): "
            f"peer {answers['peer'].body[:120]!r}..., service {answers['service'].body[:120]!r}...",
        )
    return None


def compare_documents(
    peer_base_url: str,
    service_base_url: str,
    user_ids: Iterable[str],
    token_for: Callable[[str], str],
    *,
    concurrency: int = 8,
    timeout: float = 10.0,
) -> list[Mismatch]:
    """GET every user's status from both stacks (with token_for(user_id)); the disagreements.

    An empty list means every user got a 200 with the same parsed `data` and the same compact
    JSON bytes for it from both. Fills both caches as a side effect.
    """
    users = list(user_ids)
    lanes = max(1, min(concurrency, len(users)))

    def lane(index: int) -> list[Mismatch]:
        with Client(timeout) as client:
            found = []
            for user_id in users[index::lanes]:
                mismatch = _compare_one(
                    client, user_id, peer_base_url, service_base_url, token_for(user_id)
                )
                if mismatch is not None:
                    found.append(mismatch)
            return found

    with ThreadPoolExecutor(max_workers=lanes) as pool:
        lanes_found = list(pool.map(lane, range(lanes)))
    order = {user_id: i for i, user_id in enumerate(users)}
    return sorted((m for found in lanes_found for m in found), key=lambda m: order[m.user_id])
