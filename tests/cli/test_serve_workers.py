"""`cidadao serve --workers 2`: /metrics sums both workers' counters, whichever worker answers the scrape."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.faults.harness import free_port, wait_for

from cidadao.api.metrics import MULTIPROC_DIR
from cidadao.store.db import upgrade

HEALTH_COUNT = re.compile(
    r'^cidadao_http_request_duration_seconds_count\{method="GET",route="/health",status="200"\} (\S+)$', re.M
)


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def metrics_directory(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    value = next(item for item in environ if item.startswith(MULTIPROC_DIR.encode() + b"="))
    return Path(value.partition(b"=")[2].decode())


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc")
def test_metrics_of_two_workers_are_summed_and_their_directory_removed(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": sqlite_url, "ENVIRONMENT": "development"}
    env.pop(MULTIPROC_DIR, None)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "cidadao"), "serve", "--workers", "2", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: len(children_of(server.pid)) >= 2 and httpx.get(f"{base}/health").is_success, 30,
                 "two workers")  # fmt: skip
        sent = 1 + 120  # the readiness probe above, then one connection per request to reach both workers
        for _ in range(sent - 1):
            assert httpx.get(f"{base}/health").status_code == 200
        workers = [child for child in children_of(server.pid) if MULTIPROC_DIR.encode() in
                   Path(f"/proc/{child}/environ").read_bytes()]  # fmt: skip
        directory = metrics_directory(workers[0])
        # Both workers answered some of the requests and wrote their own counters.
        assert len(list(directory.glob("histogram_*.db"))) >= 2
        for _ in range(6):  # scrapes land on either worker; each sees the sum
            counts = HEALTH_COUNT.findall(httpx.get(f"{base}/metrics").text)
            assert [float(count) for count in counts] == [sent]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not directory.exists()
