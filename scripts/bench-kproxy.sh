#!/usr/bin/env bash
# kproxy throughput and latency against the HTTP ceiling of this machine.
#
# wrk on loopback, 64 connections, 200-byte msgpack bodies with keys from
# 10,000. In the same run: a bare fasthttp server that only reads the body
# and answers 200 (the ceiling), and kproxy on a kfake broker (the dev
# stack's, with its data directory). The acks=1 comparison alternates bare
# and kproxy ROUNDS times and takes medians, because a shared machine is
# noisy; acks=0 and acks=-1 run once each.
#
# Loss check: after each kproxy run, the broker's end offsets for the run's
# fresh topic must equal the number of records kproxy answered 200 (its
# kproxy_records_total counter); wrk's own count of 200s is lower by the
# requests it abandoned in flight when its clock ran out (at most 64).
#
#   scripts/bench-kproxy.sh            DURATION=10 ROUNDS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg wrk wrk
KPROXY_BIN=${KPROXY_BIN:-bin/kproxy_bin} # another build to compare
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
CONNS=64
KAFKA_PORT=${KAFKA_PORT:-19092}
PROXY_PORT=${PROXY_PORT:-15030}
ADMIN_PORT=${ADMIN_PORT:-15040}
BARE_PORT=${BARE_PORT:-15099}
need_ports $KAFKA_PORT $PROXY_PORT $ADMIN_PORT $BARE_PORT

build_all
new_workdir

topics="bench_acks1_r1:4"
for r in $(seq 2 "$ROUNDS"); do topics+=",bench_acks1_r$r:4"; done
topics+=",bench_acks0:4,bench_acksall:4"
bin/devstack -no-zk -dir "$work/kafka" -kafka-port "$KAFKA_PORT" -topics "$topics" -ready-file "$work/ready" >"$work/devstack.log" 2>&1 &
pids+=($!)
bin/bareserver -addr "127.0.0.1:$BARE_PORT" >"$work/bare.log" 2>&1 &
pids+=($!)
cat >"$work/kproxy.yaml" <<CONF
log_dir: $work/log
log_level: 2
port: $PROXY_PORT
listen_host: 127.0.0.1
admin_addr: 127.0.0.1:$ADMIN_PORT
broker_hosts: [127.0.0.1:$KAFKA_PORT]
CONF
wait_for "kafka" 30 test -f "$work/ready"
"$KPROXY_BIN" -f "$work/kproxy.yaml" >"$work/kproxy.out" 2>&1 &
kproxy_pid=$!
pids+=($kproxy_pid)
wait_for "kproxy" 30 curl -sf "127.0.0.1:$ADMIN_PORT/health"

idle() { [ "$(metric kproxy_requests_in_flight)" = 0 ]; }
metric() { curl -s "127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1==m {printf "%d\n", $2}'; }
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}'; }

# run_wrk URL TOPIC ACKS: sets RPS P50 P99 OK (wrk's count of 2xx).
run_wrk() {
	local out
	if [ -t 2 ]; then printf '  wrk %ss against %s…' "$DURATION" "$1" >&2; else echo "  wrk ${DURATION}s against $1…" >&2; fi
	out=$(wrk -t2 -c$CONNS -d"${DURATION}s" --timeout 10s --latency -s scripts/bench-kproxy.lua "$1" -- "$2" "$3")
	[ -t 2 ] && printf '\r\033[K' >&2
	RPS=$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$out")
	P50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
	P99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
	local total non2xx
	total=$(awk '/requests in/ {print $1}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
	OK=$((total - ${non2xx:-0}))
	if grep -q "Socket errors" <<<"$out"; then grep "Socket errors" <<<"$out" >&2; fi
}

# kproxy_run TOPIC ACKS: one kproxy run and its loss check; sets RPS P50
# P99 OK ANSWERED INKAFKA LOST.
lost_total=0
kproxy_run() {
	local topic=$1 acks=$2 name before after
	name="kproxy_records_total{acks=\"$acks\"}"
	before=$(metric "$name")
	run_wrk "http://127.0.0.1:$PROXY_PORT" "$topic" "$acks"
	wait_for "kproxy to finish in-flight requests" 30 idle
	after=$(metric "$name")
	ANSWERED=$((after - before))
	INKAFKA=$(bin/endoffsets -brokers "127.0.0.1:$KAFKA_PORT" -topic "$topic")
	LOST=$((ANSWERED - INKAFKA))
	lost_total=$((lost_total + (LOST < 0 ? -LOST : LOST)))
}

row() { printf '%-20s %9s %8s %8s %7s %10s %12s %9s %5s\n' "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }

echo "kproxy benchmark: $CONNS connections, ${DURATION}s per run, 200-byte msgpack bodies, keys from 10,000, $(nproc) cores"
row "" "req/s" "p50 ms" "p99 ms" "ratio" "2xx (wrk)" "200 (kproxy)" "in kafka" "lost"
bare_rps=() proxy_rps=() proxy_p50=() proxy_p99=()
for r in $(seq "$ROUNDS"); do
	run_wrk "http://127.0.0.1:$BARE_PORT" bench 1
	bare=$RPS
	bare_rps+=("$RPS")
	row "bare fasthttp #$r" "$RPS" "$P50" "$P99" "1.00"
	kproxy_run "bench_acks1_r$r" 1
	proxy_rps+=("$RPS") proxy_p50+=("$P50") proxy_p99+=("$P99")
	row "kproxy acks=1 #$r" "$RPS" "$P50" "$P99" "$(ratio "$RPS" "$bare")" "$OK" "$ANSWERED" "$INKAFKA" "$LOST"
done
bare_med=$(median "${bare_rps[@]}")
for acks in 0 -1; do
	topic=bench_acks0
	[ "$acks" = -1 ] && topic=bench_acksall
	kproxy_run "$topic" "$acks"
	row "kproxy acks=$acks" "$RPS" "$P50" "$P99" "$(ratio "$RPS" "$bare_med")" "$OK" "$ANSWERED" "$INKAFKA" "$LOST"
done

rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$kproxy_pid/status")
med_rps=$(median "${proxy_rps[@]}")
med_p50=$(median "${proxy_p50[@]}")
med_p99=$(median "${proxy_p99[@]}")
med_ratio=$(ratio "$med_rps" "$bare_med")
echo
echo "acks=1 medians: kproxy $med_rps req/s, bare fasthttp $bare_med req/s, ratio $med_ratio, p50 ${med_p50} ms, p99 ${med_p99} ms"
echo "kproxy peak RSS: $((rss_kb / 1024)) MiB"
verdict=PASS
awk -v r="$med_ratio" 'BEGIN{exit !(r >= 0.5)}' || verdict=FAIL
awk -v p="$med_p99" 'BEGIN{exit !(p <= 10)}' || verdict=FAIL
[ "$lost_total" -eq 0 ] || verdict=FAIL
echo "target (ratio >= 0.5, p99 <= 10 ms, zero loss): $verdict (records lost or unaccounted: $lost_total)"
