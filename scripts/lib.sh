# Shared helpers for the scripts; source it, don't run it.

# ensure_pkg PATH PACKAGE: install the Debian package when PATH is missing.
ensure_pkg() {
	local path=$1 pkg=$2
	if [ -e "$path" ] || command -v "$path" >/dev/null 2>&1; then
		return 0
	fi
	echo "installing $pkg (apt-get install -y $pkg)…"
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo=sudo
	if [ -z "${_APT_UPDATED:-}" ]; then
		$sudo apt-get update -qq >/dev/null
		_APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >/dev/null
}

# build_all: the three binaries (those that exist) and the dev tools, into bin/.
build_all() {
	local pkgs=()
	for d in kproxy/kproxy_bin ktransfer/ktransfer_bin kmonitor/kmonitor_bin \
		scripts/devstack scripts/bareserver scripts/endoffsets scripts/kmonitorbench \
		scripts/sink scripts/preload scripts/httploop scripts/proxyload scripts/grpcprobe; do
		[ -d "$d" ] && pkgs+=("./$d")
	done
	go build -o bin/ "${pkgs[@]}"
}

# wait_for DESCRIPTION SECONDS COMMAND…: run COMMAND until it succeeds,
# showing progress (in place on a terminal); fail after SECONDS.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local start=$SECONDS tty=""
	[ -t 1 ] && tty=1
	"$@" >/dev/null 2>&1 && return 0
	[ -z "$tty" ] && echo "waiting for $what…"
	until "$@" >/dev/null 2>&1; do
		if (( SECONDS - start >= secs )); then
			[ -n "$tty" ] && printf '\r\033[K'
			echo "$what: not ready after ${secs}s" >&2
			return 1
		fi
		[ -n "$tty" ] && printf '\rwaiting for %s… %ss ' "$what" $((SECONDS - start))
		sleep 0.2
	done
	[ -n "$tty" ] && printf '\r\033[K'
	return 0
}

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pids PID…: SIGTERM, then wait up to 10 s, then SIGKILL.
stop_pids() {
	local p
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "$@"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}

# kafka_ports FIRST: the ports of the dev stack's three Kafka brokers
# (bin/devstack -kafka-port FIRST: broker i listens on FIRST+i).
kafka_ports() { echo "$1" $(($1 + 1)) $(($1 + 2)); }

# need_ports PORT…: fail, naming the port, when one is in use.
need_ports() {
	local p
	for p in "$@"; do
		port_free "$p" || { echo "port $p is in use (set the script's *_PORT variables to move it)" >&2; exit 1; }
	done
}

# new_workdir: a temporary directory in $work, and a trap that stops every
# PID added to the pids array and removes the directory on exit.
new_workdir() {
	work=$(mktemp -d)
	pids=()
	trap 'stop_pids "${pids[@]}"; if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi' EXIT
	trap 'exit 130' INT TERM
}

# devstack_up PID: true once the dev stack started as PID has written
# $work/ready; when PID has exited, print $work/devstack.log to fd 4 and exit
# (for wait_for: `wait_for kafka 30 devstack_up "$devstack_pid"`).
devstack_up() {
	kill -0 "$1" 2>/dev/null || { echo "devstack exited:" >&4; cat "$work/devstack.log" >&4; exit 1; }
	test -f "$work/ready"
}

# push_with_ktransfer NAME RECORDS SECS COUNT_CMD…: write $work/ktransfer.yaml
# enabling module NAME (its file in $work/modules, ZooKeeper on $ZK_PORT),
# start $KTRANSFER_BIN and wait up to SECS until COUNT_CMD prints at least
# RECORDS; exit with its log kept when ktransfer exits first. Sets
# ktransfer_pid and leaves it running. Its admin_addr is $KTRANSFER_ADMIN
# (empty, the default: off).
push_with_ktransfer() {
	local name=$1 records=$2 secs=$3
	shift 3
	cat >"$work/ktransfer.yaml" <<CONF
log_dir: $work/log
log_level: 2
zk_chroot: /mq/test_cluster
zk_hosts: [127.0.0.1:$ZK_PORT]
module_conf_dir: $work/modules
module_enabled: [$name]
admin_addr: "${KTRANSFER_ADMIN:-}"
CONF
	"$KTRANSFER_BIN" -f "$work/ktransfer.yaml" &
	ktransfer_pid=$!
	pids+=($ktransfer_pid)
	wait_for "ktransfer to push $records records" "$secs" ktransfer_pushed "$records" "$@"
}

# ktransfer_pushed RECORDS COUNT_CMD…: true when COUNT_CMD prints at least
# RECORDS; exits the script when ktransfer ($ktransfer_pid) is gone.
ktransfer_pushed() {
	local records=$1
	shift
	kill -0 "$ktransfer_pid" 2>/dev/null || { echo "ktransfer exited; its log: $work/log" >&4; KEEP=1; exit 1; }
	[ "$("$@")" -ge "$records" ]
}
