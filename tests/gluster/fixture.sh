#!/usr/bin/env bash
# A one-machine GlusterFS for the h5memfs many-nodes tests: one volume with
# one brick on loopback, mounted twice with the GlusterFS FUSE client, the
# two client mounts standing for two nodes.
#
#   fixture.sh up      start what is missing, print the two client mount
#                      paths (node A, then node B), one per line
#   fixture.sh down    unmount, stop and delete the volume, stop glusterd if
#                      this script started it; safe to run at any time
#   fixture.sh status  say what is up
#
# Both are idempotent. Needs root, /dev/fuse and Debian's glusterfs-server
# and glusterfs-client. Exit status: 0 done, 77 GlusterFS cannot be used
# here (the reason is the last line on stderr, prefixed "SKIP: "), 1 error.
#
# Hygiene: every command has a timeout; clients are unmounted with umount,
# then umount -l; h5memfs mounts left over a client are unmounted with
# fusermount3 -u, then -uz; only processes this script started are ended
# (glusterd when it was not running, the two glusterfs clients, the brick
# process of its own volume when glusterd cannot stop it), by PID, after
# checking the PID's command line. An `up` that fails tears down what it
# made.
#
# Environment:
#   H5MEMFS_GLUSTER_STATE   state directory (default /var/tmp/h5memfs-gluster):
#                           brick, client mount points, PID files, logs
#   H5MEMFS_GLUSTER_VOLUME  volume name (default h5memfs-test)
set -uo pipefail

STATE=${H5MEMFS_GLUSTER_STATE:-/var/tmp/h5memfs-gluster}
VOL=${H5MEMFS_GLUSTER_VOLUME:-h5memfs-test}
HOST=$(hostname)
NODES=(a b)
LOGS=$STATE/logs
BRICK=$STATE/brick/$VOL

say() { printf 'gluster fixture: %s\n' "$*" >&2; }
skip() { printf 'SKIP: %s\n' "$*" >&2; exit 77; }

node_dir() { printf '%s/node-%s' "$STATE" "$1"; }

cli() { # gluster CLI, non-interactive, never hanging
	timeout -k 5 "${CLI_TIMEOUT:-60}" gluster --mode=script "$@"
}

glusterd_up() { CLI_TIMEOUT=15 cli volume list >/dev/null 2>&1; }

# Is DIR a mount point in /proc/mounts (field 2, octal escapes decoded)?
mounted_at() {
	local dir=$1 dev mnt rest
	while read -r dev mnt rest; do
		mnt=$(printf '%b' "${mnt//\\/\\0}")
		[ "$mnt" = "$dir" ] && return 0
	done </proc/mounts
	return 1
}

fstype_at() {
	local dir=$1 dev mnt type rest
	while read -r dev mnt type rest; do
		mnt=$(printf '%b' "${mnt//\\/\\0}")
		[ "$mnt" = "$dir" ] && { echo "$type"; return 0; }
	done </proc/mounts
	return 1
}

# PID from FILE if that process is alive and its command line has WORD.
pid_from() {
	local file=$1 word=$2 pid
	[ -s "$file" ] || return 1
	pid=$(head -n1 "$file" | tr -dc 0-9)
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$word" || return 1
	echo "$pid"
}

# End PID (one we started): wait GRACE seconds for it to go by itself,
# then SIGTERM, then SIGKILL.
end_pid() {
	local pid=$1 grace=${2:-0} i
	for ((i = 0; i < grace * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	say "PID $pid ignored SIGTERM for 10 s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	say "PID $pid still there after SIGKILL"
	return 1
}

# --- down -------------------------------------------------------------------

# h5memfs mounts whose SOURCE lies on our clients (a test that died before
# its teardown): unmount them, or the clients stay busy.
unmount_h5memfs_over() {
	local dev mnt type rest
	while read -r dev mnt type rest; do
		[ "$type" = fuse.h5memfs ] || continue
		dev=$(printf '%b' "${dev//\\/\\0}")
		mnt=$(printf '%b' "${mnt//\\/\\0}")
		case $dev in "$STATE"/node-*) ;; *) continue ;; esac
		say "h5memfs still mounted at $mnt over $dev: unmounting"
		timeout -k 5 60 fusermount3 -u "$mnt" ||
			timeout -k 5 30 fusermount3 -uz "$mnt" ||
			timeout -k 5 30 umount -l "$mnt"
	done < <(cat /proc/mounts)
}

unmount_client() {
	local n=$1 dir pid
	dir=$(node_dir "$n")
	if mounted_at "$dir"; then
		timeout -k 5 30 umount "$dir" 2>/dev/null ||
			timeout -k 5 30 umount -l "$dir" ||
			say "cannot unmount $dir"
	fi
	if pid=$(pid_from "$STATE/client-$n.pid" "volfile-id=/$VOL"); then
		end_pid "$pid" 10 # the client exits by itself once unmounted
	fi
	rm -f "$STATE/client-$n.pid"
	[ -d "$dir" ] && ! mounted_at "$dir" && rmdir "$dir" 2>/dev/null
	return 0
}

stop_volume() {
	local f pid
	if glusterd_up && cli volume info "$VOL" >/dev/null 2>&1; then
		cli volume stop "$VOL" force >/dev/null 2>&1 ||
			say "volume stop $VOL failed"
		cli volume delete "$VOL" >/dev/null 2>&1 ||
			say "volume delete $VOL failed"
	fi
	# A brick process of our volume that glusterd did not stop (glusterd
	# gone or failing): glusterd started it for the volume we made.
	for f in /var/run/gluster/vols/"$VOL"/*.pid /run/gluster/vols/"$VOL"/*.pid; do
		[ -e "$f" ] || continue
		if pid=$(pid_from "$f" "--volfile-id $VOL."); then
			say "brick process $pid of $VOL still running: ending it"
			end_pid "$pid" 5
		fi
	done
	return 0
}

stop_glusterd() {
	local pid
	if pid=$(pid_from "$STATE/glusterd.pid" glusterd); then
		end_pid "$pid" 0
	fi
	rm -f "$STATE/glusterd.pid"
}

down() {
	local n
	[ -d "$STATE" ] || return 0
	unmount_h5memfs_over
	for n in "${NODES[@]}"; do unmount_client "$n"; done
	stop_volume
	stop_glusterd
	rm -rf "$STATE/brick"
	rm -f "$STATE/volume"
	return 0
}

# --- up ---------------------------------------------------------------------

start_glusterd() {
	local pid i
	if glusterd_up; then
		return 0 # someone's glusterd (maybe ours from an earlier up)
	fi
	if pgrep -x glusterd >/dev/null; then
		skip "a glusterd runs but does not answer the gluster CLI"
	fi
	# fd 9 (our lock) must not live on in the daemons.
	setsid glusterd -N --log-file="$LOGS/glusterd.log" \
		</dev/null >>"$LOGS/glusterd.out" 2>&1 9>&- &
	pid=$!
	echo "$pid" >"$STATE/glusterd.pid"
	for ((i = 0; i < 300; i++)); do
		glusterd_up && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	stop_glusterd
	skip "glusterd did not start within 30 s (log: $LOGS/glusterd.log)"
}

make_volume() {
	local info
	if info=$(cli volume info "$VOL" 2>/dev/null); then
		if grep -q '^Status: Started' <<<"$info" &&
			grep -qF "$HOST:$BRICK" <<<"$info" && [ -d "$BRICK" ]; then
			return 0
		fi
		say "volume $VOL exists but is not the one expected: remaking it"
		stop_volume
	fi
	# A brick directory that once was part of a volume is refused: fresh.
	rm -rf "$BRICK"
	mkdir -p "$BRICK" || return 1
	cli volume create "$VOL" "$HOST:$BRICK" force >"$LOGS/volume-create.out" 2>&1 || {
		say "volume create failed: $(cat "$LOGS/volume-create.out")"
		return 1
	}
	echo "$VOL" >"$STATE/volume"
	cli volume start "$VOL" >"$LOGS/volume-start.out" 2>&1 || {
		say "volume start failed: $(cat "$LOGS/volume-start.out")"
		return 1
	}
}

mount_client() {
	local n=$1 dir i type
	dir=$(node_dir "$n")
	mkdir -p "$dir" || return 1
	if type=$(fstype_at "$dir"); then
		[ "$type" = fuse.glusterfs ] && stat -t "$dir" >/dev/null 2>&1 &&
			return 0
		say "$dir holds a $type mount that is not a working client: unmounting"
		unmount_client "$n"
		mkdir -p "$dir" || return 1
	fi
	rm -f "$STATE/client-$n.pid"
	# The client daemonizes; its PID file is how we know it.
	timeout -k 5 60 glusterfs --process-name fuse --volfile-server="$HOST" \
		--volfile-id="/$VOL" --pid-file="$STATE/client-$n.pid" \
		--log-file="$LOGS/client-$n.log" "$dir" \
		</dev/null >>"$LOGS/client-$n.out" 2>&1 9>&- || {
		say "glusterfs client $n failed (log: $LOGS/client-$n.log)"
		return 1
	}
	for ((i = 0; i < 300; i++)); do
		if mounted_at "$dir" && timeout 10 stat -t "$dir" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	say "client $n not mounted at $dir after 30 s (log: $LOGS/client-$n.log)"
	return 1
}

up() {
	local n
	[ "$(id -u)" = 0 ] || skip "needs root (glusterd, mount)"
	for n in gluster glusterd glusterfs fusermount3 timeout setsid pgrep; do
		command -v "$n" >/dev/null ||
			skip "$n not found (apt-get install glusterfs-server glusterfs-client fuse3)"
	done
	[ -c /dev/fuse ] || skip "no /dev/fuse"
	getent hosts "$HOST" >/dev/null ||
		skip "host name $HOST does not resolve (GlusterFS needs it for the brick)"
	mkdir -p "$STATE" "$LOGS" || exit 1
	start_glusterd
	if ! make_volume; then down; exit 1; fi
	for n in "${NODES[@]}"; do
		if ! mount_client "$n"; then down; exit 1; fi
	done
	for n in "${NODES[@]}"; do node_dir "$n"; echo; done
}

status() {
	local n pid
	if pid=$(pid_from "$STATE/glusterd.pid" glusterd); then
		echo "glusterd: running, started here (PID $pid)"
	elif glusterd_up; then
		echo "glusterd: running, not started here"
	else
		echo "glusterd: not running"
	fi
	if glusterd_up && cli volume info "$VOL" >/dev/null 2>&1; then
		echo "volume $VOL: $(cli volume info "$VOL" | sed -n 's/^Status: //p')"
	else
		echo "volume $VOL: none"
	fi
	for n in "${NODES[@]}"; do
		if mounted_at "$(node_dir "$n")"; then
			echo "node $n: $(node_dir "$n") mounted"
		else
			echo "node $n: not mounted"
		fi
	done
}

main() {
	local cmd=${1:-}
	mkdir -p "$(dirname "$STATE")" || exit 1
	# One fixture command at a time.
	exec 9>"$STATE.lock" || exit 1
	flock -w 300 9 || {
		say "another fixture command holds $STATE.lock"
		exit 1
	}
	case $cmd in
	up)
		# Interrupted half-way: take down what was made.
		trap 'trap - INT TERM HUP; say "interrupted: tearing down"; down; exit 130' INT TERM HUP
		up
		;;
	down) down ;;
	status) status ;;
	*)
		echo "usage: $0 up|down|status" >&2
		exit 2
		;;
	esac
}

main "$@"
