"""The container recipe (deploy/Dockerfile) cannot be built here (no
Docker, no registry), so its runtime contract is checked without it: the
binary started as the image starts it (its ENV and CMD, read from the
Dockerfile) serves the mounted config, and the image's HEALTHCHECK command
(run with the shell it names) passes against it and fails without it."""

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import TILED_BIN, _free_port

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") != "demo",
    reason="tested once, with the demo run",
)

DOCKERFILE = Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile"


def directive(name):
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith(name + " ")]
    assert lines, f"no {name} in the Dockerfile"
    return lines[-1][len(name) + 1:]


def test_image_cmd_env_and_healthcheck(tmp_path):
    env = dict(os.environ)
    for k, v in re.findall(r"(\w+)=(\S+)", directive("ENV")):
        env[k] = v
    port = _free_port()
    config = tmp_path / "config.yml"
    config.write_text("trees: [{path: /, tree: demo}]\nauthentication: {allow_anonymous_access: true}\n")
    # Where the image mounts the config, and the port it would publish.
    assert env["TILED_CONFIG"] == "/etc/tiled/config.yml"
    env.update(TILED_CONFIG=str(config), TILED_PORT=str(port), TILED_HOST="127.0.0.1")
    cmd = json.loads(directive("CMD"))
    assert cmd[0] == "tiled"
    health = directive("HEALTHCHECK")
    health_cmd = json.loads(health[health.index("CMD ") + 4:])
    assert health_cmd[0] in ("/bin/bash", "bash"), "/bin/sh (dash) has no /dev/tcp"
    probe = [c.replace("8000", str(port)) for c in health_cmd]

    def healthy():
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0

    assert not healthy(), "the health check passes with no server"
    proc = subprocess.Popen([str(TILED_BIN), *cmd[1:]], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not healthy():
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.2)
        assert healthy()
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/search/", timeout=10)
        assert r.status_code == 200 and r.json()["meta"]["count"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert shlex.split("tiled serve config") == cmd
