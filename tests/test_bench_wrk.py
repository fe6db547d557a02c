"""`make bench`'s load (bench/wrk/status.lua) is a dashboard's: every request carries its own
user's token, over kept-alive connections, or with `Connection: close` when the row asks for it.

wrk runs for one second against a local recorder, so what it sends is checked, not its speed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import JSONHandler, local_http_server

LUA = Path(__file__).resolve().parents[1] / "bench" / "wrk" / "status.lua"
STATUS = "/api/connectors/status/"
TOKENS = {
    "00000000-0000-4000-8000-00000000000a": "token-of-a",
    "00000000-0000-4000-8000-00000000000b": "token-of-b",
    "00000000-0000-4000-8000-00000000000c": "token-of-c",
}


class Recorder(JSONHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client asks otherwise
    seen: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.seen.append(
                (
                    self.path,
                    self.headers.get("Authorization", ""),
                    self.headers.get("Connection", "").lower(),
                )
            )
        self.send_json(200, b'{"success":true,"data":{"platforms":{}},"cached":true}')


def run_wrk(base_url: str, tokens_file: Path, *, close: bool) -> dict[str, Any]:
    env = dict(
        os.environ,
        BENCH_TOKENS_FILE=str(tokens_file),
        BENCH_PATH=STATUS,
        BENCH_MODE="zipf",
        BENCH_CLOSE="1" if close else "0",
    )
    done = subprocess.run(
        ["wrk", "-t", "1", "-c", "2", "-d", "1s", "-s", str(LUA), base_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON "))
    return dict(json.loads(line.removeprefix("BENCH_JSON ")))


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    if shutil.which("wrk") is None:
        if os.environ.get("REQUIRE_SERVICES", "") not in ("", "0"):
            pytest.fail("wrk is not on the PATH (REQUIRE_SERVICES is set): apt-get install wrk")
        pytest.skip("wrk is not on the PATH")
    path = tmp_path / "tokens.txt"
    path.write_text("".join(f"{user} {token}\n" for user, token in TOKENS.items()))
    return path


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
def test_every_request_carries_its_own_users_token(tokens_file: Path, close: bool):
    Recorder.seen = []
    with local_http_server(Recorder) as base_url:
        result = run_wrk(base_url, tokens_file, close=close)

    seen = list(Recorder.seen)
    assert seen, "wrk sent nothing"
    assert result["reads_hit"] > 0
    users = {path.removeprefix(STATUS) for path, _, _ in seen}
    assert users == set(TOKENS)  # the Zipf law reaches every user of three in a second
    for path, authorization, _ in seen:
        assert authorization == f"Bearer {TOKENS[path.removeprefix(STATUS)]}", path
    connection = {header for _, _, header in seen}
    assert connection == ({"close"} if close else {""})
