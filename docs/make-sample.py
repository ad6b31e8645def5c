#!/usr/bin/python3
"""Make a sample data directory for the README tour and docs/demo.sh.

    /usr/bin/python3 docs/make-sample.py DIR

DIR (created if needed) gets experiment.h5 (group run1 with a chunked,
compressed "temperature" dataset and a "pressure" dataset), calibration.h5
and notes.txt. Existing files of those names are replaced.
"""
import os
import sys

import h5py
import numpy as np


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: make-sample.py DIR\n")
        return 2
    src = argv[1]
    os.makedirs(src, exist_ok=True)
    with h5py.File(os.path.join(src, "experiment.h5"), "w") as f:
        run = f.create_group("run1")
        t = run.create_dataset(
            "temperature", data=20 + np.arange(400.0).reshape(100, 4) / 40,
            chunks=(25, 4), compression="gzip")
        t.attrs["units"] = "degC"
        run.create_dataset("pressure", data=np.linspace(1.0, 2.0, 100))
        f.attrs["instrument"] = "demo rig"
    with h5py.File(os.path.join(src, "calibration.h5"), "w") as f:
        f.create_dataset("gain", data=np.ones(8))
        f.create_dataset("offset", data=np.zeros(8))
    with open(os.path.join(src, "notes.txt"), "w") as f:
        f.write("Measurements from the demo rig.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
