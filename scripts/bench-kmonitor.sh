#!/usr/bin/env bash
# kmonitor at scale: 50 modules x 32 partitions (1,600 offsets in
# ZooKeeper, 50 topics on the dev stack's three kfake brokers). Measures
# /delay under wrk with 8 connections (target p99 < 10 ms), against the
# ceiling measured in the same run: scripts/bareserver answering the same
# document from memory; and how long an offset change takes to show in
# /delay (target < 1 s), against the floor: a ZooKeeper watch on the
# changed znode firing.
#
#   scripts/bench-kmonitor.sh          DURATION=10 MODULES=50 PARTITIONS=32 KMONITOR_BIN=bin/kmonitor_bin
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
ensure_pkg wrk wrk
ensure_pkg curl curl
KMONITOR_BIN=${KMONITOR_BIN:-bin/kmonitor_bin} # another build to compare
DURATION=${DURATION:-10}
MODULES=${MODULES:-50}
PARTITIONS=${PARTITIONS:-32}
ZK_PORT=${ZK_PORT:-12181}
KAFKA_PORT=${KAFKA_PORT:-19390} # and the next two: three brokers
PORT=${PORT:-15532}
BARE_PORT=${BARE_PORT:-15533}
need_ports $ZK_PORT $(kafka_ports "$KAFKA_PORT") $PORT $BARE_PORT
build_all
new_workdir

topics=""
for m in $(seq 0 $((MODULES - 1))); do topics+="bench_t$m:$PARTITIONS,"; done
bin/devstack -dir "$work/devstack" -zk-port "$ZK_PORT" -kafka-port "$KAFKA_PORT" -topics "${topics%,}" \
	-ready-file "$work/ready" >"$work/devstack.log" 2>&1 &
pids+=($!)
wait_for "the dev stack" 60 test -f "$work/ready"
bin/kmonitorbench -zk "127.0.0.1:$ZK_PORT" -brokers "127.0.0.1:$KAFKA_PORT" -setup -modules "$MODULES" -partitions "$PARTITIONS"

cat >"$work/kmonitor.yaml" <<CONF
base:
 log_dir: $work/log
 log_level: 2
 clusters: [test_cluster]
http_server:
 port: $PORT
 listen_host: 127.0.0.1
 read_timeout_ms: 100
 write_timeout_ms: 100
test_cluster:
 chroot: /mq/test_cluster
 zk_hosts: [127.0.0.1:$ZK_PORT]
CONF
"$KMONITOR_BIN" -f "$work/kmonitor.yaml" &
kmon=$!
pids+=($kmon)
expected=$((MODULES * PARTITIONS))
all_known() {
	local out
	out=$(curl -sf "127.0.0.1:$PORT/delay?format=zabbix") || return 1
	[ "$(grep -c '\.delay ' <<<"$out")" -eq "$expected" ] && grep -q 'kmonitor.errors 0$' <<<"$out"
}
wait_for "kmonitor to know all $expected partitions" 60 all_known
echo "kmonitor knows $expected partitions; /delay JSON is $(curl -s "127.0.0.1:$PORT/delay" | wc -c) bytes"

to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}'; }
verdict=PASS
# wrk_run URL: one wrk run; sets rps, p50, p99 (ms) and errors.
wrk_run() {
	local out
	out=$(wrk -t2 -c8 -d"${DURATION}s" --latency "$1")
	rps=$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$out")
	p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
	p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
	errors=$(awk '/Non-2xx|Socket errors/' <<<"$out")
}
for q in "" "?format=zabbix"; do
	body="$work/body$([ -z "$q" ] || echo .zabbix)"
	curl -sf "127.0.0.1:$PORT/delay$q" >"$body"
	bin/bareserver -addr "127.0.0.1:$BARE_PORT" -body "$body" >"$work/bare.log" 2>&1 &
	bare=$!
	pids+=($bare)
	wait_for "the bare server" 10 curl -sf -o /dev/null "127.0.0.1:$BARE_PORT/"
	echo "  wrk ${DURATION}s on /delay$q, then on the bare server with the same $(wc -c <"$body")-byte body…" >&2
	wrk_run "http://127.0.0.1:$PORT/delay$q"
	printf 'GET /delay%-16s %7d req/s  p50 %6s ms  p99 %6s ms  %s\n' "$q" "$rps" "$p50" "$p99" "$errors"
	awk -v p="$p99" 'BEGIN{exit !(p < 10)}' || verdict=FAIL
	[ -z "$errors" ] || verdict=FAIL
	k_rps=$rps
	wrk_run "http://127.0.0.1:$BARE_PORT/"
	kill "$bare"
	wait "$bare" 2>/dev/null || true
	printf '  bare server, same body   %7d req/s  p50 %6s ms  p99 %6s ms  %s\n' "$rps" "$p50" "$p99" "$errors"
	awk -v k="$k_rps" -v b="$rps" 'BEGIN{printf "  /delay%s: %.2f of the bare server\n", "'"$q"'", k/b}'
done
changes=$(bin/kmonitorbench -zk "127.0.0.1:$ZK_PORT" -url "http://127.0.0.1:$PORT" -modules "$MODULES" -changes 50)
echo "$changes"
max=$(grep 'visible in /delay' <<<"$changes" | sed -n 's/.*max \([^ ]*\) .*/\1/p')
go_ms=$(awk -v v="$max" 'BEGIN{ if (v ~ /µs$/) {sub(/µs/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}')
awk -v m="$go_ms" 'BEGIN{exit !(m < 1000)}' || verdict=FAIL
echo "kmonitor peak RSS: $(( $(awk '/VmHWM/ {print $2}' "/proc/$kmon/status") / 1024 )) MiB"
echo "target (/delay p99 < 10 ms with 8 connections, offset change visible < 1 s): $verdict"
