#!/usr/bin/env bash
# The suite, live, on the embedded dev stack: ZooKeeper and a kfake broker,
# kproxy_bin, ktransfer_bin and kmonitor_bin with the files in conf/, and a
# demo backend that prints what it receives. Traffic goes in through kproxy,
# comes out at the backend in key order, and kmonitor shows the delay, also
# while the backend is down. Installs what it needs; stops everything it
# started on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing what is missing (zookeeper, kcat, curl) and building"
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
ensure_pkg kcat kcat
ensure_pkg curl curl
build_all
echo "built: $(ls bin | tr '\n' ' ')"

for p in 2181 9092 5030 5040 5050 8080 55325; do
	port_free "$p" || { echo "port $p is in use (an earlier demo or dev stack still running?); stop it and retry" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	echo
	echo "stopping: ${pids[*]:-nothing}"
	stop_pids "${pids[@]}"
	rm -rf "$work"
	echo "all demo processes stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "dev stack: ZooKeeper 127.0.0.1:2181 + Kafka (kfake) 127.0.0.1:9092, chroot /mq/test_cluster"
bin/devstack -dir "$work/devstack" -topics test_topic:4 -ready-file "$work/ready" >"$work/devstack.log" 2>&1 &
pids+=($!)
wait_for "the dev stack" 60 test -f "$work/ready" || { cat "$work/devstack.log"; exit 1; }
cat "$work/ready"
echo "broker registration in ZooKeeper (/mq/test_cluster/brokers/ids/0):"
/usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:2181 get /mq/test_cluster/brokers/ids/0 2>/dev/null | grep '^{' || true

step "kproxy_bin -f conf/kproxy.yaml (logs in ./log/kproxy.log)"
bin/kproxy_bin -f conf/kproxy.yaml &
pids+=($!)
wait_for "kproxy" 30 curl -sf 127.0.0.1:5040/health
echo "health: $(curl -s 127.0.0.1:5040/health)"

# msgpack map {"method": M, "uid": N, "seq": S} as printf escapes
record() {
	local method=$1 uid=$2 seq=$3 ml
	ml=$(printf '%02x' $((0xa0 + ${#method})))
	printf "\\x83\\xa6method\\x$ml%s\\xa3uid\\xcc\\x$(printf '%02x' "$uid")\\xa3seq\\xcc\\x$(printf '%02x' "$seq")" "$method"
}
# post QUERY: POST stdin to /commit?QUERY and print "[status] answer".
post() {
	local resp
	resp=$(curl -s -w '%{http_code}' --data-binary @- "http://127.0.0.1:5030/commit?$1")
	printf '[%s] %s\n' "${resp: -3}" "$(printf '%s' "${resp%???}" | tr -d '\n')"
}

step "keyed records: each user's records land on one partition, in order"
for seq in 1 2 3; do
	for user in alice bob carol dave; do
		uid=$(( $(printf '%d' "'${user:0:1}") ))
		method=TestUserName
		[ "$user" = bob ] && method=Login
		printf '%-32s' "POST key=$user seq=$seq"
		record "$method" "$uid" "$seq" | post "topic=test_topic&key=$user"
	done
done
printf '%-32s' "POST acks=0 (no offset)"
record Login 1 4 | post "topic=test_topic&key=alice&acks=0"
printf '%-32s' "POST acks=-1 (all replicas)"
record Login 1 5 | post "topic=test_topic&key=alice&acks=-1"
printf '%-32s' "POST without key (random)"
record Ping 9 1 | post "topic=test_topic"

step "every refusal is a clear status with a one-line reason"
printf '%-32s' "no topic";            record X 1 1 | post "key=a"
printf '%-32s' "unknown topic";       record X 1 1 | post "topic=no_such_topic"
printf '%-32s' "internal topic";      record X 1 1 | post "topic=__consumer_offsets"
printf '%-32s' "bad acks";            record X 1 1 | post "topic=test_topic&acks=2"
printf '%-32s' "not msgpack";         printf '{"json":1}' | post "topic=test_topic"
printf '%-32s' "empty body";          printf '' | post "topic=test_topic"
printf '%-32s' "11 MB body";          head -c 11000000 /dev/zero | post "topic=test_topic"
printf '%-32s' "GET instead of POST"; resp=$(curl -s -w '%{http_code}' "http://127.0.0.1:5030/commit?topic=test_topic")
printf '[%s] %s\n' "${resp: -3}" "$(printf '%s' "${resp%???}" | tr -d '\n')"

step "read back from Kafka with kcat: partition, offset, key, value bytes"
kcat -C -b 127.0.0.1:9092 -t test_topic -e -q -f '  partition %p  offset %o  key=%k  %S bytes\n' | sort -k2,2n -k4,4n

step "kproxy's metrics (http://127.0.0.1:5040/metrics)"
curl -s 127.0.0.1:5040/metrics | grep -E '^kproxy_(requests_total|records_total)' | grep -v ' 0$'

step "ktransfer_bin -f conf/ktransfer.yaml: test_module_1 pushes TestUserName records to the demo backend"
start_backend() {
	bin/sink -addr 127.0.0.1:8080 -print >>"$work/backend.log" 2>&1 &
	backend=$!
	pids+=($backend)
	wait_for "the demo backend" 10 curl -sf 127.0.0.1:8080/stats
}
start_backend
bin/ktransfer_bin -f conf/ktransfer.yaml &
pids+=($!)
wait_for "ktransfer" 30 curl -sf 127.0.0.1:5050/health
# 12 TestUserName records (alice, carol, dave) go out; bob's Login records
# and the others are filtered by the module's methods list.
pushed() { [ "$(grep -c '^push' "$work/backend.log")" -ge "$1" ]; }
wait_for "the backend to receive the 9 TestUserName records" 20 pushed 9
echo "the backend received (partition, offset, key in offset order per key; bob's Login records filtered out):"
grep '^push' "$work/backend.log" | sort -k3,3n -k5,5n | sed 's/^/    /'
echo "module status: $(curl -s 127.0.0.1:5050/status | cut -c1-200)…"

step "kmonitor_bin -f conf/kmonitor.yaml: push delay from ktransfer's offsets in ZooKeeper"
bin/kmonitor_bin -f conf/kmonitor.yaml &
pids+=($!)
wait_for "kmonitor" 30 curl -sf 127.0.0.1:55325/health
caught_up() { curl -s "127.0.0.1:55325/delay" | grep -q '"test_module_1":{"0":0,"1":0,"2":0,"3":0}'; }
wait_for "lag 0 on every partition" 20 caught_up
echo "GET /delay                 $(curl -s 127.0.0.1:55325/delay)"
echo "GET /delay?format=zabbix"
curl -s "127.0.0.1:55325/delay?format=zabbix" | sed 's/^/    /'

step "the backend stops for a moment: lag rises, then recovers"
stop_pids "$backend"
for seq in 4 5 6 7 8; do
	for user in alice carol dave; do
		record TestUserName 1 "$seq" | curl -s -o /dev/null --data-binary @- "http://127.0.0.1:5030/commit?topic=test_topic&key=$user"
	done
done
lagging() { [ "$(curl -s "127.0.0.1:55325/delay?format=zabbix" | awk '/\.delay /{s+=$3} END{print s+0}')" -gt 0 ]; }
wait_for "lag to show" 10 lagging
echo "backend down, 15 more records sent: GET /delay  $(curl -s 127.0.0.1:55325/delay)"
echo "(ktransfer retries with backoff; see log/ktransfer.log)"
start_backend
wait_for "lag to return to 0" 60 caught_up
echo "backend back:                    GET /delay  $(curl -s 127.0.0.1:55325/delay)"
echo "the backend has now received $(grep -c '^push' "$work/backend.log") pushes; per-key order: $(curl -s 127.0.0.1:8080/stats | sed 's/.*"order_violations":\([0-9]*\).*/\1/') violations"

step "done"
echo "For the fleet (several ktransfer_bin processes, failover, a spare), see scripts/e2e-fleet.sh and the README."
