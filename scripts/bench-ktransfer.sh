#!/usr/bin/env bash
# ktransfer throughput against the HTTP ceiling of this machine.
#
# 1. Fast sink: 200,000 records of 200 bytes over 10,000 keys preloaded into
#    a 4-partition topic; one module, worker_num 100, window_size 1000,
#    pushing to a local sink that counts and checks per-key order. Ceiling:
#    the same number of POSTs, 100 at a time, from a plain fasthttp client
#    loop to the same sink. Target: ratio >= 0.6, every record, order intact.
# 2. Latency-bound: the sink answers after 5 ms; the ceiling is
#    worker_num / 5 ms = 20,000/s, a sustained rate, so ktransfer's is
#    measured between the 10% and 90% marks of the records (the whole-run
#    rate, ramp-up and drain included, is printed too). Target: >= 0.8.
#    The client loop with 100 workers against the same sink is printed
#    too: what this machine can do against a 5 ms backend at all.
# WINDOW=N overrides the module's window_size (1000).
#
#   scripts/bench-ktransfer.sh          RECORDS=200000 SLOW_RECORDS=100000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
KTRANSFER_BIN=${KTRANSFER_BIN:-bin/ktransfer_bin} # another build to compare
RECORDS=${RECORDS:-200000}
SLOW_RECORDS=${SLOW_RECORDS:-100000}
ZK_PORT=${ZK_PORT:-12182}
KAFKA_PORT=${KAFKA_PORT:-19095}
SINK_PORT=${SINK_PORT:-18080}
need_ports $ZK_PORT $KAFKA_PORT $SINK_PORT
build_all
new_workdir

bin/devstack -dir "$work/devstack" -zk-port "$ZK_PORT" -kafka-port "$KAFKA_PORT" -topics bench:4,slow:4 \
	-ready-file "$work/ready" >"$work/devstack.log" 2>&1 &
pids+=($!)
wait_for "the dev stack" 60 test -f "$work/ready"
bin/preload -brokers "127.0.0.1:$KAFKA_PORT" -topic bench -records "$RECORDS"
bin/preload -brokers "127.0.0.1:$KAFKA_PORT" -topic slow -records "$SLOW_RECORDS"

stat() { curl -s "127.0.0.1:$SINK_PORT/stats" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

# start_sink [DELAY]: a fresh sink (its counts start at 0).
sink_pid=""
start_sink() {
	[ -n "$sink_pid" ] && stop_pids "$sink_pid"
	bin/sink -addr "127.0.0.1:$SINK_PORT" -delay "${1:-0s}" >"$work/sink.log" 2>&1 &
	sink_pid=$!
	pids+=($sink_pid)
	wait_for "the sink" 10 curl -sf "127.0.0.1:$SINK_PORT/stats"
}

# run_ktransfer TOPIC RECORDS: push TOPIC to the sink; sets RATE (records
# per second from the sink's first push to its last, so that start-up is
# not counted, as the client loop's rate does not count it) and RSS_MB.
run_ktransfer() {
	local topic=$1 n=$2
	mkdir -p "$work/modules"
	cat >"$work/modules/m_$topic.yaml" <<CONF
topic: $topic
protocol:
 name: http
 uri: /push/{#TOPIC}?key={#KEY}&transid={#TRANSID}
 read_timeout_ms: 0
 write_timeout_ms: 1000
 conn_timeout_ms: 1000
worker_num: 100
window_size: ${WINDOW:-1000}
max_retry_times: -1
fail_retry_interval_ms: 200
backend_servers: [127.0.0.1:$SINK_PORT]
CONF
	cat >"$work/ktransfer.yaml" <<CONF
log_dir: $work/log
log_level: 2
zk_chroot: /mq/test_cluster
zk_hosts: [127.0.0.1:$ZK_PORT]
module_conf_dir: $work/modules
module_enabled: [m_$topic]
admin_addr: ""
CONF
	local pid
	"$KTRANSFER_BIN" -f "$work/ktransfer.yaml" &
	pid=$!
	pids+=($pid)
	done_pushing() { [ "$(stat distinct)" -ge "$n" ]; }
	wait_for "ktransfer to push $n records" 600 done_pushing
	RSS_MB=$(( $(awk '/VmHWM/ {print $2}' "/proc/$pid/status") / 1024 ))
	stop_pids "$pid"
	RATE=$(stat rate)
	STEADY=$(stat steady_rate)
}

echo "ktransfer benchmark, $(nproc) cores: 200-byte records over 10,000 keys, worker_num 100, window_size 1000"
start_sink
run_ktransfer bench "$RECORDS"
kt_rate=$RATE kt_rss=$RSS_MB
violations=$(stat order_violations) distinct=$(stat distinct) pushes=$(stat pushes)
start_sink
loop=$(bin/httploop -url "http://127.0.0.1:$SINK_PORT/push" -n "$RECORDS" -c 100 -size 200)
loop_rate=$(sed -n 's/.*: \([0-9]*\) req\/s/\1/p' <<<"$loop")
ratio=$(awk -v a="$kt_rate" -v b="$loop_rate" 'BEGIN{printf "%.2f", a/b}')
printf '%-44s %9s records/s (steady %s)\n' "ktransfer -> fast sink" "$kt_rate" "$STEADY"
printf '%-44s %9s requests/s\n' "fasthttp client loop (100 workers) -> sink" "$loop_rate"
echo "ratio $ratio; delivered $distinct distinct of $RECORDS ($pushes pushes), per-key order violations: $violations; ktransfer peak RSS ${kt_rss} MiB"
verdict=PASS
awk -v r="$ratio" 'BEGIN{exit !(r >= 0.6)}' || verdict=FAIL
[ "$distinct" -eq "$RECORDS" ] && [ "$violations" -eq 0 ] || verdict=FAIL
echo "target (ratio >= 0.6, every record, order intact): $verdict"

echo
start_sink 5ms
run_ktransfer slow "$SLOW_RECORDS"
slow_violations=$(stat order_violations)
ceiling=20000
start_sink 5ms
loop=$(bin/httploop -url "http://127.0.0.1:$SINK_PORT/push" -n "$SLOW_RECORDS" -c 100 -size 200)
loop_rate=$(sed -n 's/.*: \([0-9]*\) req\/s/\1/p' <<<"$loop")
slow_ratio=$(awk -v a="$STEADY" -v b="$ceiling" 'BEGIN{printf "%.2f", a/b}')
printf '%-44s %9s records/s steady (10%%-90%% of the records), %s over the whole run\n' "ktransfer -> sink answering after 5 ms" "$STEADY" "$RATE"
printf '%-44s %9s requests/s\n' "fasthttp client loop (100 workers) -> same" "$loop_rate"
echo "against worker_num / 5 ms = $ceiling/s: ktransfer $slow_ratio, the client loop $(awk -v a="$loop_rate" -v b="$ceiling" 'BEGIN{printf "%.2f", a/b}');" \
	"ktransfer against the client loop: $(awk -v a="$STEADY" -v b="$loop_rate" 'BEGIN{printf "%.2f", a/b}'); per-key order violations: $slow_violations"
verdict=PASS
awk -v r="$slow_ratio" 'BEGIN{exit !(r >= 0.8)}' || verdict=FAIL
[ "$slow_violations" -eq 0 ] || verdict=FAIL
echo "target (>= 0.8 of worker_num / 5 ms, order intact): $verdict"
