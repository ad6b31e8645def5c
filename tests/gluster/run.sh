#!/usr/bin/env bash
# The many-nodes suite: GlusterFS up (fixture.sh), the tests, GlusterFS
# down, whatever happens (a trap runs `fixture.sh down` on exit and on
# SIGINT/SIGTERM/SIGHUP).
#
#   bash tests/gluster/run.sh [PYTEST ARGS...]
#
# Needs root, /dev/fuse, glusterfs-server and glusterfs-client, the daemon
# built (ninja -C build), and /usr/bin/python3 with pytest, h5py, tables.
# When GlusterFS cannot be started here, every test is reported skipped
# with the reason, and the exit status is 0. Otherwise: pytest's status.
# $PYTHON picks another interpreter; H5MEMFS / H5MEMFS_BUILD pick the
# daemon, as for tests/integration.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
STATE=${H5MEMFS_GLUSTER_STATE:-/var/tmp/h5memfs-gluster}
SECONDS=0

# shellcheck disable=SC2317  # called from the trap
down() {
	bash "$here/fixture.sh" down || echo "run.sh: fixture.sh down failed" >&2
}
trap 'rc=$?; trap - EXIT; down; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir -p "$STATE/logs"
rm -f "$STATE/logs/results.jsonl"
up_err=$(mktemp)
nodes=$(bash "$here/fixture.sh" up 2>"$up_err")
rc=$?
cat "$up_err" >&2
case $rc in
0)
	export H5MEMFS_GLUSTER_NODES
	H5MEMFS_GLUSTER_NODES=$(paste -sd: <<<"$nodes")
	;;
77)
	export H5MEMFS_GLUSTER_SKIP
	H5MEMFS_GLUSTER_SKIP="no GlusterFS here: $(grep '^SKIP: ' "$up_err" | tail -n1 | cut -c7-)"
	H5MEMFS_GLUSTER_SKIP=${H5MEMFS_GLUSTER_SKIP:-GlusterFS cannot be started here}
	;;
*)
	rm -f "$up_err"
	echo "run.sh: fixture.sh up failed ($rc)" >&2
	exit 1
	;;
esac
rm -f "$up_err"

cd "$here" || exit 1
# pytest's own cache stays out of the source tree.
timeout -k 30 900 "$PYTHON" -m pytest -p no:cacheprovider -ra "$@" \
	test_gluster.py
rc=$?
if [ -s "$STATE/logs/results.jsonl" ]; then
	echo "measured (seconds until node B read node A's write-back):"
	cat "$STATE/logs/results.jsonl"
fi
echo "run.sh: ${SECONDS} s so far (fixture up and tests; down follows)"
exit $rc
