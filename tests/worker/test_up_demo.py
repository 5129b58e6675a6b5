"""`cidadao up --demo`: records, findings and alerts flow within a minute; Ctrl-C stops every process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_up_demo_shows_alerts_within_a_minute_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "ENVIRONMENT": "development"}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [str(Path(sys.executable).parent / "cidadao"), "up", "--demo"], cwd=tmp_path, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    alerts = tmp_path / "var" / "demo" / "alerts.jsonl"
    started = time.monotonic()
    try:
        while time.monotonic() - started < 60:
            lines = alerts.read_text().splitlines() if alerts.exists() else []
            if any(json.loads(line)["type"] in ("finding.created", "findings.grouped") for line in lines):
                break
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            time.sleep(1)
        else:
            pytest.fail("no finding alert within a minute:\n" + (tmp_path / "up.log").read_text()[-3000:])
        findings = httpx.get(f"http://127.0.0.1:{port}/v1/findings", params={"limit": 5}, timeout=10)
        assert findings.status_code == 200
        assert findings.json()["items"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C does in a terminal
        code = up.wait(timeout=60)
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert code == 0
    assert "did not stop" not in output  # each child stopped within the grace period, none was killed
    for name in ("web", "worker", "beat"):
        assert f"up     | stopping {name}" in output
        assert f"\n{name:<6} | " in output  # the child's own lines, prefixed
    assert "[DADO SINTÉTICO DE DEMONSTRAÇÃO]" in alerts.read_text()
