#!/usr/bin/python3
"""Run PyTables' own unittest suite (Debian's python3-tables ships it) and
print one JSON line: tests run, ids of failures and errors, skips.

    pytables_suite.py all                     the whole suite (test_all)
    pytables_suite.py MODULE [MODULE...]      e.g. tables.tests.test_basics

Its temporary files go to $TMPDIR (tempfile), which is how the tests
point it into the mount or onto tmpfs.
"""

import importlib
import io
import json
import os
import sys
import time
import unittest


def main():
    os.environ.pop("HDF5_USE_FILE_LOCKING", None)  # locking on, as default
    import tables.tests.common as common
    common.verbose = False
    common.heavy = False
    names = sys.argv[1:]
    if names == ["all"]:
        names = ["tables.tests.test_all"]
    suite = unittest.TestSuite()
    for name in names:
        suite.addTests(importlib.import_module(name).suite())
    stream = io.StringIO()
    start = time.monotonic()
    res = unittest.TextTestRunner(stream=stream, verbosity=0).run(suite)
    out = {
        "run": res.testsRun,
        "failures": sorted(t.id() for t, _ in res.failures),
        "errors": sorted(t.id() for t, _ in res.errors),
        "skipped": len(res.skipped),
        "expected_failures": len(res.expectedFailures),
        "seconds": round(time.monotonic() - start, 1),
        "details": [tb[-1500:] for _, tb in res.failures + res.errors][:20],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
