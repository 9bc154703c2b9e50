#!/usr/bin/env python3
"""Node creations per second through upstream's own HTTP API and client:
`create_container` with the catalog benchmark's run metadata (~2 KB),
sequentially, as an ingest script does. Run with the bench venv against
`tiled serve catalog ... --api-key KEY`.

    python bench/upstream_api_load.py http://127.0.0.1:8000 KEY N

Prints {"nodes", "seconds", "rate"}.
"""

import json
import sys
import time

from tiled.client import from_uri

from upstream_catalog_load import run_metadata


def main():
    base, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = from_uri(base, api_key=key)
    name = f"api_runs_{int(time.time())}"
    parent = client.create_container(name)
    t = time.time()
    for i in range(n):
        parent.create_container(f"run_{i:08d}", metadata=run_metadata(i), specs=["BlueskyRun"])
    secs = time.time() - t
    print(json.dumps({"nodes": n, "seconds": secs, "rate": n / secs, "container": name}))


if __name__ == "__main__":
    main()
