#!/usr/bin/env python3
"""Write the directory benchmark's HDF5 files (h5py):

    python bench/directory_files.py DIR N [FRAMES]

Each file `fNNNN.h5` holds `/entry/data`, a (FRAMES, 1024, 1024) uint16
dataset chunked one frame per chunk, uncompressed, with values
`(frame * 7 + file + row + col) % 65536`, and a few attributes.
"""

import sys
from pathlib import Path

import h5py
import numpy as np


def main():
    out, n = Path(sys.argv[1]), int(sys.argv[2])
    frames = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    out.mkdir(parents=True, exist_ok=True)
    plane = (np.arange(1024)[:, None] + np.arange(1024)[None, :]).astype("uint32")
    for i in range(n):
        path = out / f"f{i:04d}.h5"
        if path.exists():
            continue
        with h5py.File(path, "w") as f:
            f.attrs["scan_id"] = i
            f.attrs["detector"] = "bench"
            entry = f.create_group("entry")
            entry.attrs["frames"] = frames
            d = entry.create_dataset("data", shape=(frames, 1024, 1024), dtype="uint16", chunks=(1, 1024, 1024))
            for k in range(frames):
                d[k] = ((plane + k * 7 + i) % 65536).astype("uint16")


if __name__ == "__main__":
    main()
