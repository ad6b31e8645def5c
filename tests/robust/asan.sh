#!/usr/bin/env bash
# asan.sh - build the daemon with AddressSanitizer and UndefinedBehaviorSanitizer
# (build-asan/) and run the mount tests against it: tests/integration and the
# short (CI) part of tests/robust. Fails when pytest fails or when the
# sanitizers reported anything at all, in the daemon or in the h5memfs
# command-line tools the tests run (every report goes to a log file, so that
# tests which allow daemon stderr cannot hide one).
#
#   tests/robust/asan.sh                 everything
#   tests/robust/asan.sh -k fsx          extra arguments go to pytest
#   ASAN_SUITES="tests/robust" tests/robust/asan.sh
#   ASAN_DAEMON=build/src/h5memfs-asan tests/robust/asan.sh   prebuilt daemon
#
# Timeouts are scaled by H5MEMFS_TEST_SLOWDOWN (default 3 here).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
# ASAN_DAEMON: an already built sanitized daemon (meson's h5memfs-asan, as
# the `sanitizers` test suite passes); otherwise build one in build-asan/.
if [ -n "${ASAN_DAEMON:-}" ]; then
	daemon=$ASAN_DAEMON
else
	build=${ASAN_BUILD:-build-asan}
	if [ -d "$build" ]; then
		meson configure "$build" -Db_sanitize=address,undefined \
			>/dev/null || exit 2
	else
		meson setup "$build" -Db_sanitize=address,undefined \
			>/dev/null || exit 2
	fi
	ninja -C "$build" >/dev/null || { echo "asan.sh: build failed" >&2; exit 2; }
	daemon="$repo/$build/src/h5memfs"
fi
[ -x "$daemon" ] || { echo "asan.sh: no daemon at $daemon" >&2; exit 2; }

reports=$(mktemp -d /tmp/h5memfs-asan-reports.XXXXXX)
chmod 755 "$reports"

export H5MEMFS="$daemon"
export H5MEMFS_TEST_SLOWDOWN=${H5MEMFS_TEST_SLOWDOWN:-3}
# Reports to files, one per process; keep going after UBSan findings so that
# one run shows them all; leaks are reports too.
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=0:${UBSAN_OPTIONS:-}"
# Known leaks inside system libraries (each explained in the file).
export LSAN_OPTIONS="suppressions=$repo/tests/robust/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"

suites=${ASAN_SUITES:-"tests/integration tests/robust"}
echo "asan.sh: daemon $daemon; reports in $reports"
# One pytest session per suite: each has its own conftest.py with fixtures
# of the same names (mount, source).
status=0
for suite in $suites; do
	/usr/bin/python3 -m pytest -q -p no:cacheprovider "$suite" "$@"
	rc=$?
	echo "asan.sh: $suite: pytest exit status $rc"
	[ $rc -eq 0 ] || status=$rc
done

found=$(find "$reports" -type f | sort)
if [ -n "$found" ]; then
	echo "asan.sh: sanitizer reports:" >&2
	for f in $found; do
		echo "=== $f" >&2
		head -n 40 "$f" >&2
	done
	echo "asan.sh: FAILED: $(echo "$found" | wc -l) sanitizer report file(s)" >&2
	exit 1
fi
echo "asan.sh: no sanitizer reports; pytest exit status $status"
rmdir "$reports" 2>/dev/null
exit $status
