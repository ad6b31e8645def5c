#!/bin/bash
# bench/uring_trial.sh [ROUNDS] - FUSE over io_uring against /dev/fuse:
# stats per second of a minimal FUSE filesystem served each way,
# alternating, ROUNDS times (default 5). Root; sets the fuse module's
# enable_uring for the io_uring rounds and puts it back. Needs
# build/bench/uring_trial (ninja -C build).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/bench/uring_trial
rounds=${1:-5}
param=/sys/module/fuse/parameters/enable_uring
[ -x "$bin" ] || { echo "no $bin: ninja -C build" >&2; exit 1; }
[ -w "$param" ] || { echo "this kernel has no FUSE over io_uring ($param)" >&2; exit 1; }
old=$(cat "$param")
mnt=$(mktemp -d /tmp/uring-trial.XXXXXX)
cleanup() {
	echo "$old" > "$param"
	mountpoint -q "$mnt" && umount -l "$mnt"
	rmdir "$mnt"
}
trap cleanup EXIT
for i in $(seq "$rounds"); do
	echo N > "$param"
	timeout 120 "$bin" "$mnt" classic 10000 3
	echo Y > "$param"
	timeout 120 "$bin" "$mnt" uring 10000 3
done
