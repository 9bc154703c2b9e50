"""`tiled serve config FILE` with upstream's YAML schema: several trees
mounted at paths (a catalog with writable storage, the demo), the API key
from `${ENV}`, and precise errors for mistakes."""

import os
import subprocess
import textwrap
import uuid

import numpy as np
import pytest

from conftest import TILED_BIN, Server

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") != "demo",
    reason="config files are tested once, with the demo run",
)


def test_mounted_trees_from_a_config_file(tmp_path):
    from tiled.client import from_uri

    config = tmp_path / "config.yml"
    config.write_text(textwrap.dedent(f"""\
        trees:
          - path: /raw
            tree: tiled.examples.generated:tree
          - path: /data/processed
            tree: catalog
            args:
              uri: sqlite+aiosqlite:///{tmp_path}/catalog.db
              writable_storage: {tmp_path}/data
              init_if_not_exists: true
        authentication:
          single_user_api_key: ${{MY_TILED_KEY}}
          allow_anonymous_access: false
        uvicorn:
          host: 127.0.0.1
          port: 1
        response_bytesize_limit: 300 MB
        """))
    key = uuid.uuid4().hex
    server = Server([], env_extra={"MY_TILED_KEY": key}, tree_args=["config", str(config)])
    try:
        c = from_uri(server.url, api_key=key)
        assert set(c) == {"raw", "data"}
        assert list(c["data"]) == ["processed"]
        assert "scalars" in c["raw"]
        arr = np.arange(12, dtype="int32").reshape(3, 4)
        c["data"]["processed"].write_array(arr, key="a", metadata={"from": "config"})
        np.testing.assert_array_equal(c["data"]["processed"]["a"].read(), arr)
        assert os.path.exists(tmp_path / "catalog.db")
        # The in-memory demo is read-only.
        with pytest.raises(Exception):
            c["raw"].write_array(arr, key="nope")
        # The key from ${MY_TILED_KEY} is required.
        with pytest.raises(Exception):
            from_uri(server.url)["raw"]
    finally:
        server.stop()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("trees:\n  - path: /\n    tree: catalog\n    args: {}\n", "trees[0].args.uri"),
        ("trees:\n  - path: /\n    tree: my_facility.trees:build\n", "Python object"),
        ("trees:\n  - {path: /, tree: demo}\nuvicorn:\n  port: many\n", "uvicorn.port"),
        ("trees:\n  - {path: /, tree: demo}\nsurprise: 1\n", "surprise"),
        ("trees:\n  - {path: /, tree: demo}\nauthentication:\n  single_user_api_key: ${TILED_TEST_UNSET_VAR}\n",
         "TILED_TEST_UNSET_VAR"),
        ("trees: [\n", "invalid YAML"),
    ],
)
def test_config_mistakes_name_the_key(tmp_path, text, expected):
    config = tmp_path / "config.yml"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "TILED_TEST_UNSET_VAR"}
    r = subprocess.run([str(TILED_BIN), "serve", "config", str(config), "--port", "1"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0
    assert expected in r.stderr, r.stderr
