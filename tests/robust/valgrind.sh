#!/usr/bin/env bash
# valgrind.sh - run mount tests with the daemon under valgrind memcheck.
# Every daemon (and every `h5memfs status/sync` the tests run) is started
# through a wrapper that execs valgrind with one log file per process; the
# run fails when pytest fails or when any log shows a memcheck error or a
# definite leak. Slow: timeouts are scaled by H5MEMFS_TEST_SLOWDOWN (10).
#
#   tests/robust/valgrind.sh                         the default selection
#   tests/robust/valgrind.sh tests/robust/test_fsx.py   any pytest arguments
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
daemon=${H5MEMFS:-$repo/build/src/h5memfs}
[ -x "$daemon" ] || { echo "valgrind.sh: no daemon at $daemon" >&2; exit 2; }
logs=$(mktemp -d /tmp/h5memfs-valgrind.XXXXXX)
chmod 755 "$logs"
wrapper="$logs/h5memfs"
cat > "$wrapper" <<EOF
#!/bin/sh
exec valgrind --quiet --error-exitcode=99 --leak-check=full \
	--show-leak-kinds=definite --errors-for-leak-kinds=definite \
	--track-fds=no --log-file=$logs/vg.%p.log "$daemon" "\$@"
EOF
chmod 755 "$wrapper"
export H5MEMFS="$wrapper"
export H5MEMFS_TEST_SLOWDOWN=${H5MEMFS_TEST_SLOWDOWN:-10}
if [ $# -eq 0 ]; then
	set -- tests/integration/test_writeback.py tests/integration/test_posix.py \
		tests/robust/test_conformance_ops.py tests/robust/test_fsx.py \
		tests/robust/test_concurrency.py
fi
echo "valgrind.sh: daemon $daemon; logs in $logs"
/usr/bin/python3 -m pytest -q -p no:cacheprovider "$@"
status=$?
bad=0
for f in "$logs"/vg.*.log; do
	[ -s "$f" ] || continue
	# Unhandled ioctls (FUSE passthrough's) are warnings, not errors.
	if grep -q -E "Invalid (read|write|free)|uninitialised|definitely lost|Mismatched|overlap|Syscall param" "$f"; then
		echo "=== $f" >&2
		head -n 60 "$f" >&2
		bad=$((bad + 1))
	fi
done
nlogs=$(find "$logs" -name 'vg.*.log' | wc -l)
echo "valgrind.sh: $nlogs valgrind logs, $bad with errors; pytest exit status $status"
[ $bad -eq 0 ] || exit 1
exit $status
