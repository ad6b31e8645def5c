#!/usr/bin/env bash
# valgrind.sh - run mount tests with the daemon under valgrind memcheck.
# Every daemon (and every `h5memfs status/sync` the tests run) is started
# through a wrapper that execs valgrind with one log file per process; the
# run fails when pytest fails or when any log shows a memcheck error or a
# definite leak. Slow: timeouts are scaled by H5MEMFS_TEST_SLOWDOWN (10).
#
#   tests/robust/valgrind.sh                         the default selection
#   tests/robust/valgrind.sh tests/robust/test_fsx.py   test paths (under
#                                                      tests/integration or
#                                                      tests/robust)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
daemon=${H5MEMFS:-$repo/build/src/h5memfs}
[ -x "$daemon" ] || { echo "valgrind.sh: no daemon at $daemon" >&2; exit 2; }
logs=$(mktemp -d /tmp/h5memfs-valgrind.XXXXXX)
# other uids (tests run commands as nobody) write their logs here too
chmod 1777 "$logs"
wrapper="$logs/h5memfs"
cat > "$wrapper" <<EOF
#!/bin/sh
exec valgrind --quiet --error-exitcode=99 --leak-check=full \
	--show-leak-kinds=definite --errors-for-leak-kinds=definite \
	--suppressions=$repo/tests/robust/valgrind.supp \
	--track-fds=no --log-file=$logs/vg.%p.log "$daemon" "\$@"
EOF
chmod 755 "$wrapper"
export H5MEMFS="$wrapper"
export H5MEMFS_TEST_SLOWDOWN=${H5MEMFS_TEST_SLOWDOWN:-10}
# Debian 12's valgrind (3.19) does not know openat2(2) (nor fsopen(2)): it
# answers ENOSYS, and the daemon walks SOURCE paths one component at a
# time instead (src/backing/source.c), so every test can run under it.
# H5MEMFS_ROBUST_SCRATCH=1 still makes the conformance tests' mounts
# volatile mounts without SOURCE, if wanted.
if [ $# -eq 0 ]; then
	set -- tests/integration/test_writeback.py \
		tests/integration/test_posix.py \
		tests/robust/test_conformance_ops.py \
		tests/robust/test_conformance_perms.py \
		"tests/robust/test_fsx.py::test_fsx_short[passthrough=on-source-700]" \
		"tests/robust/test_fsx.py::test_fsx_short[passthrough=off-source-700]"
fi
echo "valgrind.sh: daemon $daemon; logs in $logs"
# One pytest session per directory: each suite has its own conftest.py
# with fixtures of the same names (mount, source).
status=0
for dir in tests/integration tests/robust; do
	args=()
	for a in "$@"; do
		case $a in
		$dir/*|$dir) args+=("$a") ;;
		esac
	done
	[ ${#args[@]} -gt 0 ] || continue
	/usr/bin/python3 -m pytest -q -p no:cacheprovider "${args[@]}"
	rc=$?
	echo "valgrind.sh: pytest ${args[*]}: exit status $rc"
	[ $rc -eq 0 ] || status=$rc
done
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
