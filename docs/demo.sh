#!/usr/bin/env bash
# docs/demo.sh: the main job of h5memfs, end to end, on throwaway data.
#
# Makes a sample SOURCE directory (two HDF5 files and a text file) in a fresh
# temporary directory, mounts it with build/src/h5memfs, reads it through the
# mount with h5ls and h5dump, adds a dataset with h5py, shows that SOURCE is
# still untouched, unmounts, and shows that the new dataset has landed in
# SOURCE. Whatever happens, the mount is taken down and the temporary
# directory removed before the script exits.
#
# Run it from anywhere after building: bash docs/demo.sh
# H5MEMFS=/path/to/h5memfs overrides the binary; PYTHON overrides the Python
# interpreter that has h5py (default /usr/bin/python3, Debian's).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${H5MEMFS:-$repo/build/src/h5memfs}
py=${PYTHON:-/usr/bin/python3}

ready_timeout=20  # seconds to wait for the mount to serve
exit_timeout=60   # seconds to wait for write-back and daemon exit
tool_timeout=60   # seconds any one command may take

step=0
heading() {
	step=$((step + 1))
	printf '\n==> %d. %s\n' "$step" "$*"
}

# Show a command (with the temporary directory abbreviated to $DEMO), then run
# it under a timeout so that a hung mount cannot hang the demo.
run() {
	local shown="$*"
	printf '$ %s\n' "${shown//$tmp/\$DEMO}"
	timeout "$tool_timeout" "$@"
}

die() {
	printf 'demo.sh: %s\n' "$*" >&2
	exit 1
}

is_mounted() {
	grep -q " $mnt fuse" /proc/mounts
}

# Poll until "$@" fails (the thing waited for is gone) or $1 seconds pass.
wait_gone() {
	local limit=$1 i
	shift
	for ((i = 0; i < limit * 10; i++)); do
		"$@" || return 0
		sleep 0.1
	done
	return 1
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "${mnt:-}" ] && is_mounted; then
		# waits for the daemon's write-back and exit; then lazily
		timeout "$exit_timeout" "$bin" unmount "$mnt" ||
			timeout "$exit_timeout" "$bin" unmount --lazy \
				--timeout 10 "$mnt" || true
	fi
	if [ -n "${tmp:-}" ] && [ -d "$tmp" ]; then
		if [ -n "${mnt:-}" ] && is_mounted; then
			echo "demo.sh: $mnt is still mounted; leaving $tmp" >&2
		else
			rm -rf "$tmp"
		fi
	fi
	if [ "$rc" -ne 0 ]; then
		echo "demo.sh: FAILED at step $step (exit $rc)" >&2
	fi
	exit "$rc"
}

[ -x "$bin" ] || die "$bin not found; build first: meson setup build && ninja -C build"
command -v fusermount3 >/dev/null || die "fusermount3 not found (Debian package fuse3)"
command -v h5ls >/dev/null || die "h5ls not found (Debian package hdf5-tools)"
"$py" -c 'import h5py' 2>/dev/null || die "$py cannot import h5py (Debian package python3-h5py)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/h5memfs-demo.XXXXXX")
src=$tmp/source
mnt=$tmp/mnt
fifo=$tmp/ready.fifo
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir "$src" "$mnt"

heading "Make a sample SOURCE: two HDF5 files and a text file"
run "$py" "$repo/docs/make-sample.py" "$src"
run ls -l "$src"
before=$(sha256sum <"$src/experiment.h5")

heading "Mount SOURCE on MOUNTPOINT (daemonised; wait for 'ready' on the notify pipe)"
mkfifo "$fifo"
# Open the FIFO read-write so neither side blocks on open, whatever order
# the daemon and we get there in.
exec 3<>"$fifo"
run "$bin" -o notify_pipe="$fifo" "$src" "$mnt" 3<&-
line=
read -r -t "$ready_timeout" line <&3 || true
exec 3<&-
[ "$line" = ready ] || die "no 'ready' from h5memfs on $fifo within ${ready_timeout}s (got '${line}')"
is_mounted || die "$mnt does not appear in /proc/mounts"
grep " $mnt " /proc/mounts | sed "s|$tmp|\$DEMO|g"

heading "Browse the mount: names, sizes and modes come from SOURCE"
run ls -l "$mnt"
run cat "$mnt/notes.txt"

heading "Read HDF5 files through the mount with h5ls and h5dump"
run h5ls -r "$mnt/experiment.h5"
run h5dump -H "$mnt/experiment.h5"
run h5dump -d /gain "$mnt/calibration.h5"

heading "Edit through the mount with h5py: add a dataset"
run "$py" - "$mnt/experiment.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    t = f["run1/temperature"][...]
    mean = f.create_dataset("run1/temperature_mean", data=t.mean(axis=0))
    mean.attrs["units"] = "degC"
    print("wrote /run1/temperature_mean =", mean[...])
PY
run h5ls -r "$mnt/experiment.h5"

heading "h5memfs status: what is in memory, what awaits write-back"
run "$bin" status "$mnt"

heading "SOURCE is unchanged until write-back (the edit lives in memory)"
run h5ls -r "$src/experiment.h5"
[ "$(sha256sum <"$src/experiment.h5")" = "$before" ] ||
	die "SOURCE/experiment.h5 changed before write-back"
echo "SOURCE/experiment.h5 has the same bytes as before the edit."

heading "Unmount: the daemon writes dirty files back to SOURCE, then exits"
# h5memfs unmount returns once the daemon has exited, with its status:
# 0 when everything is durable in SOURCE.
run "$bin" unmount --timeout "$exit_timeout" "$mnt" ||
	die "h5memfs unmount failed (exit $?)"
is_mounted && die "$mnt still mounted after h5memfs unmount"
echo "The daemon has exited; everything is written back."

heading "The new dataset is now in SOURCE"
run h5ls -r "$src/experiment.h5"
h5ls "$src/experiment.h5/run1/temperature_mean" >/dev/null 2>&1 ||
	die "/run1/temperature_mean is missing from SOURCE/experiment.h5"
run "$py" - "$src/experiment.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    t, m = f["run1/temperature"][...], f["run1/temperature_mean"][...]
    assert np.allclose(m, t.mean(axis=0)), (m, t.mean(axis=0))
    print("SOURCE /run1/temperature_mean =", m)
PY
leftover=$(find "$src" -name '.h5memfs-tmp.*')
[ -z "$leftover" ] || die "temporary files left in SOURCE: $leftover"
run ls -l "$src"

printf '\ndemo.sh: all steps passed.\n'
