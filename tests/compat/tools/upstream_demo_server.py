"""Serve a replica of docs/demo.md with the *upstream* (Python) tiled server.

Used to check the compat suite's own client-side logic against a real
upstream server. Not part of the suite. Needs upstream's server extras
(fastapi, uvicorn, sqlalchemy, ... `tiled[minimal-server]`, plus openpyxl and
strawberry-graphql) importable next to the pinned client. Its CLI mimics our
binary, so it can stand in for TILED_BIN through a small wrapper script:

  #!/bin/sh
  exec python tests/compat/tools/upstream_demo_server.py "$@"

  serve demo --host H --port P [--private] [--api-key K]

Expected failures against it are upstream deviations the spec documents or
upstream MapAdapter limitations: access_tags null, 500 on expected_shape
mismatch in array/full, 422 on page[limit] > 300, lz4 content-encoding,
MapAdapter sort/specs/like/keypresent/case-insensitive full-text behaviour.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import dask.array as da
import numpy as np
import pandas as pd
import uvicorn
from tiled.adapters.array import ArrayAdapter
from tiled.adapters.mapping import MapAdapter
from tiled.adapters.table import TableAdapter
from tiled.config import Authentication
from tiled.server.app import build_app
from tiled.structures.core import Spec

import demo_values as dv


def arr_adapter(spec):
    if spec.path == "nested/images/big_image":
        def fn(block_info=None):
            loc = block_info[None]["array-location"]
            return spec.region(tuple(slice(a, b) for a, b in loc))
        a = da.map_blocks(fn, chunks=spec.chunks, dtype=spec.dtype)
    elif spec.shape == ():
        a = spec.full()
        return ArrayAdapter.from_array(a)
    else:
        a = da.from_array(spec.full(), chunks=spec.chunks)
    return ArrayAdapter.from_array(a, dims=spec.dims)


def build(path=""):
    children = {}
    for key in dv.CONTAINERS[path]:
        p = f"{path}/{key}".lstrip("/")
        if p in dv.CONTAINERS:
            md, specs = {}, []
            if p.startswith("many/"):
                k = int(key.split("_")[1])
                md, specs = dv.many_metadata(k), [Spec(s) for s in dv.many_specs(k)]
            elif p in dv.METADATA_DESCRIPTION_CONTAINERS:
                md = {"description": f"{p} container"}
            children[key] = build_container(p, md, specs)
        elif p in dv.ARRAYS:
            if p.startswith("many/"):
                k = int(key.split("_")[1])
                children[key] = ArrayAdapter.from_array(
                    dv.many_array(k), metadata=dv.many_metadata(k), specs=[Spec(s) for s in dv.many_specs(k)]
                )
            else:
                children[key] = arr_adapter(dv.ARRAYS[p])
        elif p in dv.TABLES:
            children[key] = TableAdapter.from_pandas(dv.table_frame(p), npartitions=dv.TABLES[p]["npartitions"])
    return children


def build_container(p, md, specs):
    return MapAdapter(build(p), metadata=md, specs=specs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("cmd")
    parser.add_argument("what")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--public", action="store_true")
    parser.add_argument("--api-key", default=os.environ.get("TILED_SINGLE_USER_API_KEY"))
    args = parser.parse_args()
    tree = MapAdapter(build(""), metadata={"description": "tiled-rs demo tree"})
    auth = Authentication(
        single_user_api_key=args.api_key or "dummykey",
        allow_anonymous_access=not args.private,
    )
    app = build_app(tree, authentication=auth)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
