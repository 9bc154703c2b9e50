"""Graceful shutdown: on SIGTERM the server stops accepting connections,
finishes the responses under way (a long streamed download arrives whole),
and exits with status 0."""

import os
import signal
import socket
import time

import httpx
import pytest

from conftest import Server

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") != "demo",
    reason="tested once, with the demo run",
)


def test_sigterm_finishes_in_flight_downloads():
    s = Server([], tree_args=["demo"])
    try:
        rows = 1000  # 1000 × 10000 float64: 80 MB, streamed in strips
        url = f"{s.api}/array/full/nested/images/big_image"
        with httpx.Client(timeout=120) as client:
            with client.stream("GET", url, params={"slice": f"0:{rows}"}) as r:
                assert r.status_code == 200
                chunks = r.iter_bytes(1 << 20)
                received = len(next(chunks))
                s.proc.send_signal(signal.SIGTERM)
                # New connections are refused once the signal is handled.
                deadline = time.monotonic() + 10
                refused = False
                while time.monotonic() < deadline and not refused:
                    try:
                        socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
                        time.sleep(0.1)
                    except OSError:
                        refused = True
                assert refused, "still accepting connections after SIGTERM"
                assert s.proc.poll() is None, "exited before the download finished"
                for chunk in chunks:
                    received += len(chunk)
                    time.sleep(0.001)  # a slow reader
        assert received == rows * 10000 * 8
        assert s.proc.wait(timeout=30) == 0
    finally:
        s.stop()
