#!/usr/bin/env bash
# What one dead backend of two costs ktransfer, with and without the circuit
# breaker.
#
# RECORDS records of 200 bytes over 10,000 keys, preloaded into a 4-partition
# topic; a module with 100 workers, window_size 1000, fail_retry_interval_ms
# 200 (the default) and backend_servers [dead, sink], the dead one being in
# turn:
#   refused   nothing listens on its port (the connection is refused at once)
#   500       a sink answering every push with status 500
#   timeout   a sink that never answers; read_timeout_ms 200
# Each kind runs with breaker_failures 0 (off) and then 5 (cooldown 1000 ms),
# after a baseline with the healthy sink alone. The rate is the healthy
# sink's: distinct records per second from its first push to its last; the
# dead sink's push count shows what reached it.
#
#   scripts/bench-breaker.sh      RECORDS=20000 DEAD="refused 500 timeout"
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
ensure_pkg curl curl
KTRANSFER_BIN_SET=${KTRANSFER_BIN:-}
KTRANSFER_BIN=${KTRANSFER_BIN:-bin/ktransfer_bin} # another build to compare (then ktransfer is not built)
RECORDS=${RECORDS:-20000}
DEAD=${DEAD:-refused 500 timeout}
ZK_PORT=${ZK_PORT:-12183}
KAFKA_PORT=${KAFKA_PORT:-19105}
SINK_PORT=${SINK_PORT:-18090}
DEAD_PORT=${DEAD_PORT:-18091}
need_ports $ZK_PORT $(kafka_ports "$KAFKA_PORT") $SINK_PORT $DEAD_PORT
[ -n "${KTRANSFER_BIN_SET:-}" ] || go build -o bin/ ./ktransfer/ktransfer_bin
go build -o bin/ ./scripts/devstack ./scripts/sink ./scripts/preload
new_workdir
exec 4>&2 # for failures inside wait_for, which silences its command

bin/devstack -dir "$work/devstack" -zk-port "$ZK_PORT" -kafka-port "$KAFKA_PORT" -topics breaker:4 \
	-ready-file "$work/ready" >"$work/devstack.log" 2>&1 &
devstack_pid=$!
pids+=($devstack_pid)
wait_for "the dev stack" 60 devstack_up "$devstack_pid"
bin/preload -brokers "127.0.0.1:$KAFKA_PORT" -topic breaker -records "$RECORDS"

stat() { curl -s "127.0.0.1:$1/stats" | sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p"; }

# start_sink PORT FLAGS…: a fresh sink on PORT; sets SINK_PID.
start_sink() {
	local port=$1
	shift
	bin/sink -addr "127.0.0.1:$port" "$@" >"$work/sink-$port.log" 2>&1 &
	SINK_PID=$!
	pids+=($SINK_PID)
	wait_for "the sink on $port" 10 curl -sf "127.0.0.1:$port/stats"
}

# run NAME FAILURES BACKENDS READ_TIMEOUT_MS: push the topic with a module of
# its own (so it starts at the oldest record) until the healthy sink has
# every record.
run() {
	local name=$1 failures=$2 backends=$3 read_timeout=$4
	mkdir -p "$work/modules"
	cat >"$work/modules/$name.yaml" <<CONF
topic: breaker
protocol:
 name: http
 uri: /push/{#TOPIC}?key={#KEY}&transid={#TRANSID}
 read_timeout_ms: $read_timeout
 write_timeout_ms: 1000
 conn_timeout_ms: 1000
worker_num: 100
window_size: 1000
max_retry_times: -1
fail_retry_interval_ms: 200
backend_servers: [$backends]
breaker_failures: $failures
breaker_cooldown_ms: 1000
CONF
	push_with_ktransfer "$name" "$RECORDS" 900 stat "$SINK_PORT" distinct
	stop_pids "$ktransfer_pid"
}

healthy=127.0.0.1:$SINK_PORT dead=127.0.0.1:$DEAD_PORT
echo "ktransfer with one dead backend of two, $(nproc) cores: $RECORDS records, 100 workers, fail_retry_interval_ms 200"
start_sink "$SINK_PORT"
run m_baseline 0 "$healthy" 0
base=$(stat "$SINK_PORT" rate)
printf '%-40s %8s records/s\n' "healthy sink alone" "$base"
stop_pids "$SINK_PID"
for kind in $DEAD; do
	for failures in 0 5; do
		start_sink "$SINK_PORT"
		healthy_pid=$SINK_PID dead_pid="" read_timeout=0
		case $kind in
		refused) ;;
		500) start_sink "$DEAD_PORT" -status 500 && dead_pid=$SINK_PID ;;
		timeout) start_sink "$DEAD_PORT" -delay 1h && dead_pid=$SINK_PID read_timeout=200 ;;
		*) echo "DEAD: unknown kind $kind (refused, 500, timeout)" >&2; exit 2 ;;
		esac
		run "m_${kind}_$failures" "$failures" "$dead, $healthy" "$read_timeout"
		rate=$(stat "$SINK_PORT" rate)
		seen="-"
		[ -n "$dead_pid" ] && seen=$(stat "$DEAD_PORT" pushes)
		label="dead backend $kind, breaker "$([ "$failures" = 0 ] && echo off || echo "on ($failures)")
		printf '%-40s %8s records/s, %s of the baseline; the dead backend saw %s pushes\n' \
			"$label" "$rate" "$(awk -v a="$rate" -v b="$base" 'BEGIN{printf "%.2f", a/b}')" "$seen"
		stop_pids "$healthy_pid" $dead_pid
	done
done
