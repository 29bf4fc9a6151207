#!/usr/bin/env bash
# The three binaries end to end, as processes, on the dev stack: records go
# in through kproxy (mixed acks and keys, every third a "Login"), two
# ktransfer modules on one topic push them to two backends (one module
# filtered to Login), kmonitor reports the delay. Meanwhile ktransfer is
# killed with SIGKILL and restarted, one backend is stopped and restarted,
# and ZooKeeper is restarted. Asserted: every record kproxy accepted with 200
# reaches the unfiltered backend and exactly the Logins reach the filtered
# one, each key's records in order, kmonitor's /delay back to 0 and agreeing
# with the offsets in ZooKeeper and the brokers' end offsets, and nothing
# left running at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
ensure_pkg curl curl # the checks below ask the binaries' HTTP ports
ZK=12290 KAFKA=19290 PROXY=15290 PROXY_ADMIN=15291 KT_ADMIN=15292 KMON=15293 SINK_A=18290 SINK_B=18291
need_ports $ZK $(kafka_ports $KAFKA) $PROXY $PROXY_ADMIN $KT_ADMIN $KMON $SINK_A $SINK_B
build_all
new_workdir
fail() { echo "FAIL: $*" >&2; exit 1; }

bin/devstack -dir "$work/devstack" -zk-port $ZK -kafka-port $KAFKA -topics e2e:4 -ready-file "$work/ready" >"$work/devstack.log" 2>&1 &
devstack=$!
pids+=($devstack)
wait_for "the dev stack" 60 test -f "$work/ready"

sink() { # sink NAME PORT [FLAGS…]
	local name=$1 port=$2
	shift 2
	bin/sink -addr "127.0.0.1:$port" -state "$work/$name.state" "$@" >>"$work/$name.log" 2>&1 &
	pids+=($!)
	eval "${name}_pid=$!"
	wait_for "backend $name" 10 curl -sf "127.0.0.1:$port/stats"
}
sink a $SINK_A
sink b $SINK_B -method Login

mkdir -p "$work/modules"
module() { # module NAME PORT [methods line]
	cat >"$work/modules/$1.yaml" <<CONF
topic: e2e
$3
protocol: {name: http, uri: "/push?key={#KEY}&transid={#TRANSID}", read_timeout_ms: 0, write_timeout_ms: 1000, conn_timeout_ms: 1000}
worker_num: 10
window_size: 100
fail_retry_interval_ms: 100
max_retry_interval_ms: 1000
backend_servers: [127.0.0.1:$2]
CONF
}
module e2e_all $SINK_A ""
module e2e_login $SINK_B "methods: [Login]"
cat >"$work/kproxy.yaml" <<CONF
log_dir: $work/log
port: $PROXY
listen_host: 127.0.0.1
admin_addr: 127.0.0.1:$PROXY_ADMIN
read_timeout_ms: 2000
write_timeout_ms: 2000
broker_hosts: [127.0.0.1:$KAFKA, 127.0.0.1:$((KAFKA + 1)), 127.0.0.1:$((KAFKA + 2))]
CONF
cat >"$work/ktransfer.yaml" <<CONF
log_dir: $work/log
zk_chroot: /mq/test_cluster
zk_timeout_ms: 4000
zk_hosts: [127.0.0.1:$ZK]
module_conf_dir: $work/modules
module_enabled: [e2e_all, e2e_login]
admin_addr: 127.0.0.1:$KT_ADMIN
CONF
cat >"$work/kmonitor.yaml" <<CONF
base: {log_dir: $work/log, clusters: [test_cluster]}
http_server: {port: $KMON, listen_host: 127.0.0.1, read_timeout_ms: 10000, write_timeout_ms: 10000}
test_cluster: {chroot: /mq/test_cluster, zk_hosts: [127.0.0.1:$ZK]}
CONF
bin/kproxy_bin -f "$work/kproxy.yaml" &
pids+=($!)
start_ktransfer() {
	bin/ktransfer_bin -f "$work/ktransfer.yaml" &
	ktransfer=$!
	pids+=($ktransfer)
	wait_for "ktransfer" 30 curl -sf "127.0.0.1:$KT_ADMIN/health"
}
start_ktransfer
bin/kmonitor_bin -f "$work/kmonitor.yaml" &
pids+=($!)
wait_for "kproxy" 30 curl -sf "127.0.0.1:$PROXY_ADMIN/health"
wait_for "kmonitor" 30 curl -sf "127.0.0.1:$KMON/health"

total=0 logins=0
load() { # load FROM COUNT: through kproxy; adds to total and logins
	local out
	out=$(bin/proxyload -url "http://127.0.0.1:$PROXY" -topic e2e -from "$1" -records "$2" -keys 200)
	total=$((total + $(awk '{print $2}' <<<"$out")))
	logins=$((logins + $(awk '{print $4}' <<<"$out")))
	echo "  sent $2 records: $out"
	# Nothing makes kproxy refuse here: a refusal is a failure, not a
	# smaller count to compare the backends with.
	[ "$(awk '{print $6}' <<<"$out")" -eq 0 ] || fail "kproxy refused records: $out"
}
echo "1. 1,500 records through kproxy (acks 0/1/-1, 200 keys)"
load 0 1500
echo "2. ktransfer killed with SIGKILL and started again"
kill -KILL "$ktransfer"; wait "$ktransfer" 2>/dev/null || true
start_ktransfer
# The dead process's claims last until its session expires (zk_timeout_ms).
owns_all() { [ "$(curl -s "127.0.0.1:$KT_ADMIN/status" | grep -o '"partition":' | wc -l)" -eq 8 ]; }
wait_for "the new ktransfer to own every partition" 30 owns_all
retries() { curl -s "127.0.0.1:$KT_ADMIN/metrics" | awk '$1 ~ /^ktransfer_retries_total/ {s+=$2} END{print s+0}'; }
retried() { [ "$(retries)" -gt "$1" ]; }
echo "3. backend a stopped; 1,500 more records; backend a started again once ktransfer retried pushes to it"
retries_before=$(retries)
stop_pids "$a_pid"
load 1500 1500
wait_for "ktransfer to retry pushes to the stopped backend a" 60 retried "$retries_before"
sink a $SINK_A
echo "4. ZooKeeper restarted; 600 more records"
kill -HUP "$devstack"
wait_for "ZooKeeper to be back" 60 grep -q "zookeeper back" "$work/devstack.log"
load 3000 600

stat() { curl -s "127.0.0.1:$1/stats" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"; }
arrived() { [ "$(stat $SINK_A distinct)" -ge "$total" ] && [ "$(stat $SINK_B distinct)" -ge "$logins" ]; }
# What to look at when a wait fails: the backends' counts, ktransfer's view
# and the end of the logs.
diagnose() {
	echo "--- backend a: $(curl -s 127.0.0.1:$SINK_A/stats)" >&2
	echo "--- backend b: $(curl -s 127.0.0.1:$SINK_B/stats)" >&2
	echo "--- ktransfer /status: $(curl -s 127.0.0.1:$KT_ADMIN/status)" >&2
	echo "--- kmonitor /delay: $(curl -s 127.0.0.1:$KMON/delay)" >&2
	echo "--- ktransfer.log (last 40 lines):" >&2
	tail -n 40 "$work/log/ktransfer.log" >&2
	echo "--- devstack.log (last 15 lines):" >&2
	tail -n 15 "$work/devstack.log" >&2
}
wait_for "every accepted record at the backends" 180 arrived || { diagnose; fail "records missing at the backends"; }
zero() {
	local out
	out=$(curl -s "127.0.0.1:$KMON/delay?format=zabbix")
	[ "$(grep -c '\.delay 0$' <<<"$out")" -eq 8 ] && grep -q 'kmonitor.errors 0$' <<<"$out"
}
wait_for "kmonitor's delay to return to 0" 60 zero || { diagnose; fail "kmonitor's delay did not return to 0"; }
sleep 1

retries=$(retries)
zk_restarts=$(grep -c "zookeeper back" "$work/devstack.log" || true)
zk_lost=$(cat "$work"/log/ktransfer.log | grep -c "zookeeper disconnected" || true)
echo "faults seen: $retries push retries while backend a was down (since the restart of ktransfer), $zk_restarts ZooKeeper restart," \
	"$zk_lost ZooKeeper disconnects in ktransfer's log"
[ "$retries" -gt 0 ] && [ "$zk_restarts" -eq 1 ] && [ "$zk_lost" -gt 0 ] || fail "a fault was not injected"
a_distinct=$(stat $SINK_A distinct) b_distinct=$(stat $SINK_B distinct)
echo "kproxy accepted $total records ($logins Logins)"
echo "backend a (all):    $a_distinct distinct records in $(stat $SINK_A pushes) pushes, order violations $(stat $SINK_A order_violations)"
echo "backend b (Login):  $b_distinct distinct records in $(stat $SINK_B pushes) pushes, order violations $(stat $SINK_B order_violations), not Login $(stat $SINK_B wrong_method)"
[ "$a_distinct" -eq "$total" ] || fail "backend a has $a_distinct distinct records, kproxy accepted $total"
[ "$b_distinct" -eq "$logins" ] || fail "backend b has $b_distinct distinct records, kproxy accepted $logins Logins"
[ "$(stat $SINK_A order_violations)" -eq 0 ] && [ "$(stat $SINK_B order_violations)" -eq 0 ] || fail "per-key order violated"
[ "$(stat $SINK_B wrong_method)" -eq 0 ] || fail "the filtered backend received other methods"

# kmonitor agrees with ZooKeeper and the brokers.
ends=$(bin/endoffsets -brokers 127.0.0.1:$KAFKA -topic e2e -v | grep /)
detail=$(curl -s "127.0.0.1:$KMON/delay?detail=1")
zk=$( { for m in e2e_all e2e_login; do for p in 0 1 2 3; do echo "get /mq/test_cluster/consumers/$m/offsets/e2e/$p"; done; done; } |
	/usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:$ZK 2>/dev/null | grep -E '^[0-9]+$' | tr '\n' ' ')
[ "$(wc -w <<<"$zk")" -eq 8 ] || fail "read $(wc -w <<<"$zk") offsets from ZooKeeper, want 8"
by_module=$(sed 's/,"e2e_login":/\n"e2e_login":/' <<<"$detail")
for p in 0 1 2 3; do
	end=$(awk -v k="e2e/$p" '$1==k {print $2}' <<<"$ends")
	for m in e2e_all e2e_login; do
		want="\"$p\":{\"topic\":\"e2e\",\"partition\":\"$p\",\"lag\":0,\"committed\":$end,\"log_end\":$end"
		grep "\"$m\":" <<<"$by_module" | grep -qF "$want" || fail "kmonitor $m/$p does not show committed = log_end = $end: $detail"
	done
done
i=0
for z in $zk; do # e2e_all's partitions 0-3, then e2e_login's
	p=$((i % 4)) i=$((i + 1))
	end=$(awk -v k="e2e/$p" '$1==k {print $2}' <<<"$ends")
	[ "$z" = "$end" ] || fail "ZooKeeper offset $z of partition $p is not its end offset $end"
done
echo "kmonitor /delay is 0 everywhere; its committed offsets equal ZooKeeper's ($zk) and the brokers' end offsets"

# Each stops on SIGTERM, within its shutdown bounds (20 s: ktransfer's
# shutdown_timeout_ms and more): one still running then is a failure
# (stop_pids' SIGKILL, only for the clean-up, would hide it).
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
left=""
for p in "${pids[@]}"; do
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
	if kill -0 "$p" 2>/dev/null; then left="$left $p"; fi
done
stop_pids "${pids[@]}"
[ -z "$left" ] || fail "still running 20 s after SIGTERM:$left"
echo "every process stopped on SIGTERM"
echo "e2e: PASS"
