"""`cidadao serve` as a real process: migrated-database guard, JSON logs carrying the request id."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from cidadao.store.db import engine_for

from .conftest import seed

START = [sys.executable, "-c", "from cidadao.cli import main; main()"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "LOG_FORMAT": "json", "ENVIRONMENT": "test"}


def test_serve_answers_and_logs_json_with_the_request_id(settings: Any) -> None:
    url = settings.effective_database_url
    seed(engine_for(url), count=5)
    port = _port()
    server = subprocess.Popen(
        [*START, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(url),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/findings?limit=2", headers={"X-Request-ID": "reportagem-42"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["X-Request-ID"] == "reportagem-42"
            assert len(json.load(response)["items"]) == 2
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [
        line for line in lines if line.get("event") == "request" and line.get("route") == "/v1/findings"
    ]
    assert access, stderr
    assert access[0]["request_id"] == "reportagem-42"
    assert access[0]["status"] == 200


def test_serve_refuses_an_unmigrated_database(sqlite_url: str) -> None:
    result = subprocess.run(
        [*START, "serve", "--port", str(_port())],
        env=_env(sqlite_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cidadao db upgrade" in result.stderr
