#!/usr/bin/env bash
# The suite, live, on the embedded dev stack: ZooKeeper and a Kafka cluster
# of three kfake brokers, kproxy_bin, ktransfer_bin and kmonitor_bin with the
# files in conf/, and a demo backend that prints what it receives. Traffic
# goes in through kproxy, comes out at the backend in key order, and
# kmonitor shows the delay, also while the backend is down; a kproxy with a
# spool keeps every record through a Kafka restart and its own kill -9. Installs what it
# needs; stops everything it started on exit or Ctrl-C.
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

for p in 2181 $(kafka_ports 9092) 5030 5031 5032 5040 5042 5050 5051 8080 55325; do
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

step "dev stack: ZooKeeper 127.0.0.1:2181 + Kafka (kfake, 3 brokers) 127.0.0.1:9092-9094, chroot /mq/test_cluster"
start_devstack() {
	rm -f "$work/ready"
	bin/devstack -dir "$work/devstack" -topics test_topic:4,demo_intake:2,demo_spool:2 -ready-file "$work/ready" >>"$work/devstack.log" 2>&1 &
	devstack=$!
	pids+=($devstack)
}
start_devstack
wait_for "the dev stack" 60 test -f "$work/ready" || { cat "$work/devstack.log"; exit 1; }
cat "$work/ready"
echo "three brokers registered in ZooKeeper as ZooKeeper-mode Kafka does (ktransfer and kmonitor find them there):"
for id in 0 1 2; do
	reg=$(/usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:2181 get "/mq/test_cluster/brokers/ids/$id" 2>/dev/null | grep '^{' || true)
	echo "    /mq/test_cluster/brokers/ids/$id  $(sed -n 's/.*"host":"\([^"]*\)".*"port":\([0-9]*\).*/host \1 port \2/p' <<<"$reg")"
done
echo "the cluster as a Kafka client sees it (kcat -L -b 127.0.0.1:9092 -t test_topic):"
kcat -L -b 127.0.0.1:9092 -t test_topic | grep -E 'brokers:|broker [0-9]|topic "|partition [0-9]' | sed 's/^/  /'

step "kproxy_bin -f conf/kproxy.yaml, with its grpc_port: 5031 line uncommented (logs in ./log/kproxy.log)"
sed 's/^# grpc_port: 5031 /grpc_port: 5031   /' conf/kproxy.yaml >"$work/kproxy.yaml"
grep -q '^grpc_port: 5031' "$work/kproxy.yaml" || { echo "conf/kproxy.yaml has no '# grpc_port: 5031' line" >&2; exit 1; }
bin/kproxy_bin -f "$work/kproxy.yaml" &
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
printf '%-32s' "POST without key (sticky)"
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

step "POST /batch: records of several keys (and topics, if wanted) in one request, a result each"
curl -s 'http://127.0.0.1:5030/batch?topic=test_topic&acks=1' -H 'Content-Type: application/json' \
	-d '[{"key":"erin","value":{"method":"Login","uid":5}},
	     {"key":"frank","value":{"method":"Login","uid":6},"headers":{"trace-id":"demo-1"}}]'
echo
printf '%-32s' "batch with a bad record"
curl -s 'http://127.0.0.1:5030/batch?acks=1' -H 'Content-Type: application/json' \
	-d '[{"topic":"test_topic","value":1},{"topic":"no_such_topic","value":2}]'
echo

step "gRPC on port 5031 (kafkahttpwrapper.v1.KProxy; scripts/grpcprobe is a small Go client)"
bin/grpcprobe -addr 127.0.0.1:5031 -health | sed "s/^/    /"
echo "Produce, 2 records for key erin at acks=-1:"
bin/grpcprobe -addr 127.0.0.1:5031 -topic test_topic -key erin -value 'login via grpc #' -n 2 -acks -1 | sed 's/^/    /'
echo "ProduceStream, 2 requests of 1 record for key frank (answers in order, each with its id):"
bin/grpcprobe -addr 127.0.0.1:5031 -topic test_topic -key frank -value stream -stream 2 | sed 's/^/    /'
echo "refused: unknown topic (NotFound, nothing written):"
bin/grpcprobe -addr 127.0.0.1:5031 -topic no_such_topic | sed 's/^/    /' || true

step "read back from Kafka with kcat: partition, offset, key, value bytes"
kcat -C -b 127.0.0.1:9092 -t test_topic -e -q -f '  partition %p  offset %o  key=%k  %S bytes\n' | sort -k2,2n -k4,4n

step "JSON bodies, record headers and batches (topic demo_intake)"
# send PATH QUERY BODY [curl args…]: POST BODY as JSON and print "[status] answer".
send() {
	local path=$1 query=$2 body=$3 resp
	shift 3
	resp=$(curl -s -w '%{http_code}' -H 'Content-Type: application/json' "$@" --data-binary "$body" "http://127.0.0.1:5030/$path?$query")
	printf '[%s] %s\n' "${resp: -3}" "$(printf '%s' "${resp%???}" | tr -d '\n')"
}
printf '%-32s' "JSON body + 2 headers"
send commit "topic=demo_intake&key=alice" '{"method":"Login","uid":7}' -H 'X-Kafka-Header-Trace-Id: 4bf92f35' -H 'X-Kafka-Header-Source: demo'
printf '%-32s' "batch of 3 (JSON)"
send batch "topic=demo_intake&acks=1" '[{"key":"alice","value":{"n":1}},{"key":"bob","value":[1,2,3],"headers":{"source":"demo"}},{"value":"no key"}]'
printf '%-32s' "atomic batch (one transaction)"
send batch "topic=demo_intake&acks=-1&atomic=1" '[{"key":"carol","value":{"n":2}},{"key":"carol","value":{"n":3}}]'
printf '%-32s' "bad batch: nothing written"
send batch "topic=demo_intake" '[{"key":"dave","value":1},{"key":"dave"}]'
echo "read back with kcat (headers too):"
kcat -C -b 127.0.0.1:9092 -t demo_intake -e -q -f '  partition %p  offset %o  key=%k  headers=%h  value=%s\n' | sort -k2,2n -k4,4n

step "kproxy's metrics (http://127.0.0.1:5040/metrics)"
curl -s 127.0.0.1:5040/metrics | grep -E '^kproxy_(requests_total|records_total)' | grep -v ' 0$'

step "ktransfer_bin -f conf/ktransfer.yaml: two modules on test_topic push to the demo backend"
echo "test_module_1 pushes only TestUserName records to /XXX/…; test_module_2 pushes every record to /all/…"
start_backend() {
	bin/sink -addr 127.0.0.1:8080 -print >>"$work/backend.log" 2>&1 &
	backend=$!
	pids+=($backend)
	wait_for "the demo backend" 10 curl -sf 127.0.0.1:8080/stats
}
start_backend
bin/ktransfer_bin -f conf/ktransfer.yaml &
kt1=$!
pids+=($kt1)
wait_for "ktransfer" 30 curl -sf 127.0.0.1:5050/health
# pushed PATH N: the backend got at least N pushes under PATH.
pushed() { [ "$(grep -c "^push.* $1" "$work/backend.log")" -ge "$2" ]; }
wait_for "the 9 TestUserName records at /XXX/" 20 pushed /XXX/ 9
wait_for "all 21 records at /all/" 20 pushed /all/ 21
echo "test_module_1 (partition, offset, key; in offset order per key; bob's Login records filtered out):"
grep '^push.* /XXX/' "$work/backend.log" | sort -k3,3n -k5,5n | sed 's/^/    /'
echo "test_module_2 received $(grep -c '^push.* /all/' "$work/backend.log") records, every one sent"

step "the asynchronous call: the URL to call travels with the record (test_module_2's target_header: target)"
echo "POST /commit?topic=test_topic&key=order-42 with X-Kafka-Header-Target: http://127.0.0.1:8080/callback/order-42?status=paid"
curl -s -H 'Content-Type: application/json' -H 'X-Kafka-Header-Target: http://127.0.0.1:8080/callback/order-42?status=paid' \
	--data-binary '{"order":42,"status":"paid"}' "http://127.0.0.1:5030/commit?topic=test_topic&key=order-42"
echo
wait_for "the call at /callback/order-42" 20 pushed /callback/ 1
echo "the backend received it at the URL the record named (only a host:port of backend_servers is allowed):"
grep '^push.* /callback/' "$work/backend.log" | sed 's/^/    /'
# owned PORT: the partitions a ktransfer process reports, per module.
owned() { curl -s "127.0.0.1:$1/status" | grep -o '"name":"[a-z_0-9]*"\|"partition":[0-9]*' | sed 's/"name":"\(.*\)"/\1:/; s/"partition"://' | tr '\n' ' '; }

step "a second ktransfer process (conf/ktransfer_2.yaml) joins: the partitions are shared"
echo "(run from a copy whose module_conf_dir is a copy of conf/modules: a later step edits a module file)"
cp -r conf/modules "$work/modules"
sed "s|^module_conf_dir: .*|module_conf_dir: $work/modules|" conf/ktransfer_2.yaml >"$work/ktransfer_2.yaml"
bin/ktransfer_bin -f "$work/ktransfer_2.yaml" &
kt2=$!
pids+=($kt2)
wait_for "the second ktransfer" 30 curl -sf 127.0.0.1:5051/health
count() { curl -s "127.0.0.1:$1/status" | grep -o '"partition":[0-9]*' | wc -l; }
shared() { [ "$(count 5050)" -eq 4 ] && [ "$(count 5051)" -eq 4 ]; }
wait_for "a 2 + 2 split of each module's 4 partitions" 20 shared
echo "process 1 holds: $(owned 5050)"
echo "process 2 holds: $(owned 5051)"

step "kmonitor_bin -f conf/kmonitor.yaml: push delay from ktransfer's offsets in ZooKeeper"
bin/kmonitor_bin -f conf/kmonitor.yaml &
pids+=($!)
wait_for "kmonitor" 30 curl -sf 127.0.0.1:55325/health
caught_up() {
	local out
	out=$(curl -s "127.0.0.1:55325/delay?format=zabbix")
	[ "$(grep -c '\.delay 0$' <<<"$out")" -eq 8 ] && grep -q 'kmonitor.errors 0$' <<<"$out"
}
wait_for "lag 0 on every partition" 20 caught_up
echo "GET /delay                 $(curl -s 127.0.0.1:55325/delay)"
echo "GET /delay?format=zabbix"
curl -s "127.0.0.1:55325/delay?format=zabbix" | sed 's/^/    /'

send() { # send N: N TestUserName records for alice, carol and dave each
	local i user
	for i in $(seq "$1"); do
		for user in alice carol dave; do
			record TestUserName 1 "$i" | curl -s -o /dev/null --data-binary @- "http://127.0.0.1:5030/commit?topic=test_topic&key=$user"
		done
	done
}
lagging() { [ "$(curl -s "127.0.0.1:55325/delay?format=zabbix" | awk '/\.delay /{s+=$3} END{print s+0}')" -gt 0 ]; }

step "reload (SIGHUP): process 2's test_module_2 pushes to /all2/ instead of /all/"
# confhash PORT: the configuration's hash in a process's /status.
confhash() { curl -s "127.0.0.1:$1/status" | grep -o '"hash":"[0-9a-f]*"' | head -1 | cut -d'"' -f4; }
before=$(confhash 5051)
sed -i 's|^ uri: /all/| uri: /all2/|' "$work/modules/test_module_2.yaml"
kill -HUP "$kt2"
reloaded() { [ "$(confhash 5051)" != "$before" ]; }
wait_for "process 2's new configuration hash" 20 reloaded
echo "process 2's /status config.hash: $before -> $(confhash 5051); last reload: $(curl -s 127.0.0.1:5051/status | grep -o '"last_reload":{[^}]*}' | grep -o '"result":"[a-z]*"\|"restarted":\[[^]]*\]' | tr '\n' ' ')"
send 2
wait_for "pushes at /all2/ (test_module_2 restarted on process 2; test_module_1 untouched)" 20 pushed /all2/ 1
echo "pushes at /all2/ so far: $(grep -c '^push.* /all2/' "$work/backend.log") (process 1 still pushes its share at /all/)"
echo "$(grep -c 'configuration reloaded' log/ktransfer_2/ktransfer.log) reload(s) in log/ktransfer_2/ktransfer.log"
wait_for "lag to return to 0" 60 caught_up

step "the backend stops for a moment: lag rises, then recovers"
stop_pids "$backend"
send 5
wait_for "lag to show" 10 lagging
echo "backend down, 15 more records sent: GET /delay  $(curl -s 127.0.0.1:55325/delay)"
echo "(ktransfer retries with backoff; see log/ktransfer.log)"
start_backend
wait_for "lag to return to 0" 60 caught_up
echo "backend back:                    GET /delay  $(curl -s 127.0.0.1:55325/delay)"

step "process 1 is killed (kill -9): process 2 takes its partitions when its ZooKeeper session expires"
kill -KILL "$kt1"
wait "$kt1" 2>/dev/null || true
killed=$SECONDS
send 3
took_all() { [ "$(count 5051)" -eq 8 ]; }
wait_for "process 2 to hold every partition" 30 took_all
echo "process 2 holds: $(owned 5051) ($((SECONDS - killed)) s after the kill; zk_timeout_ms is 3000)"
wait_for "lag to return to 0" 60 caught_up
echo "GET /delay  $(curl -s 127.0.0.1:55325/delay)"
echo "the backend has now received $(grep -c '^push' "$work/backend.log") pushes; per-key order: $(curl -s 127.0.0.1:8080/stats | sed 's/.*"order_violations":\([0-9]*\).*/\1/') violations"

step "the spool: Kafka stops under load, kproxy answers 202, is killed (kill -9), both restart, every 200 and 202 is in Kafka"
echo "a second kproxy_bin (port 5032, admin 5042) with spool_dir: $work/spool and spool_after_ms: 500"
sed 's/^port: 5030/port: 5032/; s|^admin_addr: 127.0.0.1:5040|admin_addr: 127.0.0.1:5042|; s|^log_dir: .*|log_dir: ./log/kproxy_spool|' conf/kproxy.yaml >"$work/kproxy_spool.yaml"
printf 'spool_dir: %s\nspool_after_ms: 500\n' "$work/spool" >>"$work/kproxy_spool.yaml"
start_spool_proxy() {
	bin/kproxy_bin -f "$work/kproxy_spool.yaml" &
	spool_proxy=$!
	pids+=($spool_proxy)
	wait_for "kproxy with a spool" 30 curl -sf 127.0.0.1:5042/health
}
start_spool_proxy
# The load: keys u1, u2, u3, each a numbered string record after the
# other, every answer noted as "key number status" (000: no answer).
spool_load() {
	local i=0 key v code
	while [ ! -e "$work/spool.stop" ]; do
		i=$((i + 1))
		for key in u1 u2 u3; do
			v="$key#$i"
			code=$(printf "\\x$(printf %02x $((0xa0 + ${#v})))%s" "$v" |
				curl -s -o /dev/null -w '%{http_code}' --max-time 10 --data-binary @- "http://127.0.0.1:5032/commit?topic=demo_spool&key=$key&acks=-1" || true)
			echo "$key $i $code" >>"$work/spool.hist"
		done
		sleep 0.02
	done
}
spool_load &
spool_load_pid=$!
pids+=($spool_load_pid)
answers() { awk '{n[$3]++} END {for (c in n) printf "%s×%d ", c, n[c]}' "$work/spool.hist"; }
spool_metric() { curl -s 127.0.0.1:5042/metrics | awk -v m="$1" '$1 == m {print $2}'; }
has() { [ "$(awk -v c="$1" '$3 == c' "$work/spool.hist" | wc -l)" -ge "$2" ]; }
wait_for "200s" 20 has 200 30
echo "Kafka up:                    answers $(answers)"
stop_pids "$devstack"
echo "Kafka (the dev stack) stopped"
wait_for "202s" 30 has 202 60
echo "Kafka away:                  answers $(answers); kproxy_spool_records $(spool_metric kproxy_spool_records)"
echo "/health: $(curl -s 127.0.0.1:5042/health)"
kill -KILL "$spool_proxy"
wait "$spool_proxy" 2>/dev/null || true
echo "kproxy killed (kill -9) with $(ls "$work/spool" | grep -c seg) spool segment(s) on disk"
start_devstack
wait_for "the dev stack" 60 test -f "$work/ready"
echo "Kafka restarted over its data directory"
start_spool_proxy
echo "kproxy restarted on the same spool_dir: $(grep -h 'spool holds records' log/kproxy_spool/kproxy.log | tail -1 | grep -o 'records=[0-9]*') replayed"
drained() { [ "$(spool_metric kproxy_spool_records)" = 0 ]; }
wait_for "the spool to drain" 60 drained
sleep 1
touch "$work/spool.stop"
wait "$spool_load_pid" 2>/dev/null || true
echo "drained, the load stopped:   answers $(answers); kproxy_spool_drained_total $(spool_metric kproxy_spool_drained_total)," \
	"kproxy_spool_duplicates_possible_total $(spool_metric kproxy_spool_duplicates_possible_total)"
kcat -C -b 127.0.0.1:9092 -t demo_spool -e -q -f '%k %s\n' | awk '{split($2, a, "#"); print $1, a[2]}' >"$work/spool.kafka"
accepted=$(awk '$3 == 200 || $3 == 202' "$work/spool.hist" | wc -l)
echo "in Kafka (kcat -C -t demo_spool): $(wc -l <"$work/spool.kafka") records; answered 200 or 202: $accepted" \
	"(000: no answer, sent while kproxy was killed: not accepted, not counted)"
awk 'NR == FNR { if ($3 == 200 || $3 == 202) want[$1 " " $2] = 1; next }
	{ if (seen[$0]++) { dup++; next } if ($2 < last[$1]) bad++; last[$1] = $2; delete want[$0] }
	END { missing = length(want); printf "accepted and missing: %d; per-key order violations: %d; duplicates: %d\n", missing, bad, dup }' \
	"$work/spool.hist" "$work/spool.kafka"

step "done"
echo "More: scripts/e2e.sh (the three binaries with faults), scripts/e2e-fleet.sh (a fleet under kill -9 and SIGTERM)."
