#!/usr/bin/env bash
# kproxy throughput and latency against the HTTP ceiling of this machine and
# against the shortest proxy on the same Kafka library.
#
# wrk on loopback, 64 connections, 200-byte msgpack bodies with keys from
# 10,000, acks=1. Each round runs, one after the other: a bare fasthttp
# server that only reads the body and answers 200 (the HTTP ceiling),
# kgoproxy (scripts/kgoproxy: fasthttp + one franz-go ProduceSync per
# request, acks=1) and kproxy, both on the dev stack's three kfake
# brokers.
# ROUNDS rounds alternate the three and the ratios are of the medians,
# because a shared machine is noisy; kproxy at acks=0 and acks=-1 runs once
# each after the rounds.
#
# Each row gives the CPU time (user + system, from /proc) per request
# answered 200 of the server (the bare server, kgoproxy or kproxy), of wrk
# and of the brokers (the dev stack's process): it follows what a request
# costs, where req/s also follows whatever else the machine runs. The
# summary turns them into the machine's budget: on these cores, what a
# proxy may cost per request for 0.6 of the bare server's rate, given what
# wrk and the brokers cost.
#
# Targets (acks=1 medians): kproxy >= 0.6 of the bare server, >= 1.0 of
# kgoproxy, p99 <= 5 ms, no record lost.
#
# Loss check: after each proxy run, the brokers' end offsets for the run's
# fresh topic must equal the number of records the proxy answered 200
# (kproxy_requests_total{code="200"}, kgoproxy's /stats); wrk's own count of
# 200s is lower by the requests it abandoned in flight when its clock ran
# out (at most 64).
#
#   scripts/bench-kproxy.sh            DURATION=10 ROUNDS=5 by default
#
# MODE=formats compares kproxy with itself instead: in each round, acks=1,
# the same 200-byte record as msgpack (the default above), as JSON
# (Content-Type: application/json) and as msgpack with three
# X-Kafka-Header-* record headers, one run after the other (each round
# starting with the next format), each on a fresh topic with its loss
# check. Target: JSON and headers each within 10% of msgpack (ratios of
# the medians).
#
#   MODE=formats scripts/bench-kproxy.sh
#
# PROFILE_DIR=DIR saves a CPU profile of each kproxy run (its admin's
# /debug/pprof/profile, from 2 s into the run to 1 s before its end) as
# DIR/kproxy_TOPIC.pprof (go tool pprof).
#
# KPROXY_CONF adds lines to kproxy's configuration, e.g.
#   KPROXY_CONF='release_idle_buffers: false' scripts/bench-kproxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg wrk wrk
ensure_pkg curl curl
KPROXY_BIN_SET=${KPROXY_BIN:-}
KPROXY_BIN=${KPROXY_BIN:-bin/kproxy_bin} # another build to compare (then kproxy is not built)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
MODE=${MODE:-compare} # compare: bare server, kgoproxy, kproxy; formats: kproxy's msgpack, JSON, 3 headers
FORMATS="msgpack json headers"
case $MODE in compare | formats) ;; *) echo "MODE must be compare or formats, got $MODE" >&2; exit 1 ;; esac
CONNS=64
KAFKA_PORT=${KAFKA_PORT:-19092}
PROXY_PORT=${PROXY_PORT:-15030}
ADMIN_PORT=${ADMIN_PORT:-15040}
KGO_PORT=${KGO_PORT:-15031}
BARE_PORT=${BARE_PORT:-15099}
need_ports $(kafka_ports "$KAFKA_PORT") $PROXY_PORT $ADMIN_PORT $KGO_PORT $BARE_PORT

[ -n "${KPROXY_BIN_SET:-}" ] || go build -o bin/ ./kproxy/kproxy_bin
go build -o bin/ ./scripts/devstack ./scripts/bareserver ./scripts/endoffsets ./scripts/kgoproxy
new_workdir
exec 4>&2 # for failures inside wait_for, which silences its command

topics=""
for r in $(seq "$ROUNDS"); do
	if [ "$MODE" = formats ]; then
		for f in $FORMATS; do topics+="bench_${f}_r$r:4,"; done
	else
		topics+="bench_acks1_r$r:4,bench_kgo_r$r:4,"
	fi
done
topics+="bench_acks0:4,bench_acksall:4"
bin/devstack -no-zk -dir "$work/kafka" -kafka-port "$KAFKA_PORT" -topics "$topics" -ready-file "$work/ready" >"$work/devstack.log" 2>&1 &
devstack_pid=$!
pids+=($devstack_pid)
if [ "$MODE" = compare ]; then
	bin/bareserver -addr "127.0.0.1:$BARE_PORT" >"$work/bare.log" 2>&1 &
	bare_pid=$!
	pids+=($bare_pid)
fi
cat >"$work/kproxy.yaml" <<CONF
log_dir: $work/log
log_level: 2
port: $PROXY_PORT
listen_host: 127.0.0.1
admin_addr: 127.0.0.1:$ADMIN_PORT
broker_hosts: [$(printf "127.0.0.1:%s, " $(kafka_ports "$KAFKA_PORT") | sed "s/, $//")]
${KPROXY_CONF:-}
CONF
wait_for "kafka" 30 devstack_up "$devstack_pid"
"$KPROXY_BIN" -f "$work/kproxy.yaml" >"$work/kproxy.out" 2>&1 &
kproxy_pid=$!
pids+=($kproxy_pid)
if [ "$MODE" = compare ]; then
	bin/kgoproxy -addr "127.0.0.1:$KGO_PORT" -brokers "$(printf "127.0.0.1:%s," $(kafka_ports "$KAFKA_PORT") | sed "s/,$//")" >"$work/kgoproxy.log" 2>&1 &
	kgo_pid=$!
	pids+=($kgo_pid)
	wait_for "kgoproxy" 30 curl -sf "127.0.0.1:$KGO_PORT/stats"
fi
wait_for "kproxy" 30 curl -sf "127.0.0.1:$ADMIN_PORT/health"

# metric NAME [LABEL]: the sum of kproxy's samples of NAME carrying LABEL
# (e.g. acks="1"), 0 when there are none.
metric() {
	curl -s "127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" -v l="${2:-}" '
		{ name = $1; sub(/\{.*/, "", name) }
		name == m && (l == "" || index($1, l)) { s += $2 }
		END { printf "%d\n", s }'
}
kgostat() { curl -s "127.0.0.1:$KGO_PORT/stats" | awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i+1)}'; }
kproxy_idle() { [ "$(metric kproxy_requests_in_flight)" = 0 ]; }
kgo_idle() { [ "$(kgostat inflight)" = 0 ]; }
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}'; }

# run_wrk URL TOPIC ACKS [FORMAT]: sets RPS P50 P99 OK (wrk's count of 2xx)
# and WRK_TICKS (wrk's CPU time in clock ticks: this shell's waited-for
# children, grandchildren included); FORMAT is the body of
# bench-kproxy.lua (msgpack, json, headers).
run_wrk() {
	local out c0
	c0=$(child_ticks)
	if [ -t 2 ]; then printf '  wrk %ss against %s…' "$DURATION" "$1" >&2; else echo "  wrk ${DURATION}s against $1…" >&2; fi
	out=$(wrk -t2 -c$CONNS -d"${DURATION}s" --timeout 10s --latency -s scripts/bench-kproxy.lua "$1" -- "$2" "$3" "${4:-msgpack}")
	[ -t 2 ] && printf '\r\033[K' >&2
	P50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
	P99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
	local total non2xx socket secs
	total=$(awk '/requests in/ {print $1}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
	OK=$((total - ${non2xx:-0}))
	# The rate of 2xx answers, not wrk's Requests/sec: a server answering
	# errors fast would score higher. Errors fail the run (errors_total).
	secs=$(awk '/requests in/ {sub(/s,$/, "", $4); print $4}' <<<"$out")
	RPS=$(awk -v n="$OK" -v s="$secs" 'BEGIN {printf "%d", n / s}')
	socket=$(awk '/Socket errors/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' <<<"$out")
	if grep -q "Socket errors" <<<"$out"; then grep "Socket errors" <<<"$out" >&2; fi
	errors_total=$((errors_total + ${non2xx:-0} + ${socket:-0}))
	WRK_TICKS=$(($(child_ticks) - c0))
}
errors_total=0

# loss_check TOPIC: sets INKAFKA and LOST (answered 200 minus in Kafka,
# from ANSWERED) and adds |LOST| to lost_total.
lost_total=0
loss_check() {
	# The topic is deleted once counted: kfake keeps records in memory, and
	# a later run would pay for the earlier runs' heap.
	INKAFKA=$(bin/endoffsets -brokers "127.0.0.1:$KAFKA_PORT" -topic "$1" -delete)
	LOST=$((ANSWERED - INKAFKA))
	lost_total=$((lost_total + (LOST < 0 ? -LOST : LOST)))
}

# kproxy_run TOPIC ACKS [FORMAT]: one kproxy run and its loss check; sets
# RPS P50 P99 OK ANSWERED INKAFKA LOST.
kproxy_run() {
	local topic=$1 acks=$2 before after
	# The 200s kproxy answered (each run is one acks level).
	before=$(metric kproxy_requests_total 'code="200"')
	if [ -n "${PROFILE_DIR:-}" ]; then
		mkdir -p "$PROFILE_DIR"
		(sleep 2 && curl -s -o "$PROFILE_DIR/kproxy_$topic.pprof" \
			"127.0.0.1:$ADMIN_PORT/debug/pprof/profile?seconds=$((DURATION > 4 ? DURATION - 3 : 1))") &
	fi
	run_wrk "http://127.0.0.1:$PROXY_PORT" "$topic" "$acks" "${3:-msgpack}"
	wait_for "kproxy to finish in-flight requests" 30 kproxy_idle
	# acks=0 records are answered before Kafka has them: read both counts
	# until they hold still (at most 10 s).
	local prev="" now tries=0
	while :; do
		after=$(metric kproxy_requests_total 'code="200"')
		now="$after $(bin/endoffsets -brokers "127.0.0.1:$KAFKA_PORT" -topic "$topic")"
		[ "$now" = "$prev" ] || [ $((tries += 1)) -gt 20 ] && break
		prev=$now
		sleep 0.5
	done
	ANSWERED=$((after - before))
	loss_check "$topic"
}

# kgo_run TOPIC: the same for kgoproxy (acks=1 whatever the request says).
kgo_run() {
	local before after
	before=$(kgostat ok)
	run_wrk "http://127.0.0.1:$KGO_PORT" "$1" 1
	wait_for "kgoproxy to finish in-flight requests" 30 kgo_idle
	after=$(kgostat ok)
	ANSWERED=$((after - before))
	loss_check "$1"
}

# A process's CPU time (user + system) per request answered 200: steadier
# than req/s on a shared machine, where other work takes cores away.
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
child_ticks() { awk '{print $16 + $17}' "/proc/$$/stat"; }
per_req() { awk -v t="$1" -v hz="$hz" -v n="$2" 'BEGIN{printf "%.1f", t / hz * 1e6 / n}'; }

row() { printf '%-20s %9s %8s %8s %9s %10s %12s %9s %5s %7s %7s %8s\n' "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }

if [ "$MODE" = formats ]; then
	echo "kproxy body formats: $CONNS connections, ${DURATION}s per run, acks=1, 200-byte bodies, keys from 10,000, $(nproc) cores"
	# The brokers' (devstack's) CPU per request too: records with headers
	# are larger for them as well.
	frow() { printf '%-14s %9s %8s %8s %9s %8s %8s %10s %12s %9s %5s\n' "$@"; }
	frow "" "req/s" "p50 ms" "p99 ms" "/msgpack" "cpu µs" "kafka µs" "2xx (wrk)" "200 (proxy)" "in kafka" "lost"
	declare -A rps p99 cpu kcpu line rounds
	order=($FORMATS)
	for r in $(seq "$ROUNDS"); do
		# Each round starts with another format, so that none always
		# runs first (on a fresh kproxy, or after a pause).
		for f in "${order[@]}"; do
			t0=$(cpu_ticks "$kproxy_pid") k0=$(cpu_ticks "$devstack_pid")
			kproxy_run "bench_${f}_r$r" 1 "$f"
			us=$(per_req $(($(cpu_ticks "$kproxy_pid") - t0)) "$ANSWERED")
			kus=$(per_req $(($(cpu_ticks "$devstack_pid") - k0)) "$ANSWERED")
			rps[$f]+="$RPS " p99[$f]+="$P99 " cpu[$f]+="$us " kcpu[$f]+="$kus "
			line[$f]="$RPS $P50 $P99 $us $kus $OK $ANSWERED $INKAFKA $LOST"
		done
		order=("${order[@]:1}" "${order[0]}")
		base=${line[msgpack]%% *}
		for f in $FORMATS; do
			set -- ${line[$f]}
			rounds[$f]+="$(ratio "$1" "$base") "
			frow "$f #$r" "$1" "$2" "$3" "$(ratio "$1" "$base")" "$4" "$5" "$6" "$7" "$8" "$9"
		done
	done
	echo
	msgpack_med=$(median ${rps[msgpack]})
	msgpack_cpu=$(median ${cpu[msgpack]})
	verdict=PASS
	for f in $FORMATS; do
		med=$(median ${rps[$f]})
		echo "$f: median $med req/s (p99 $(median ${p99[$f]}) ms), $(ratio "$med" "$msgpack_med") of msgpack" \
			"(round by round: $(median ${rounds[$f]})); kproxy CPU $(median ${cpu[$f]}) µs per request," \
			"$(ratio "$(median ${cpu[$f]})" "$msgpack_cpu") of msgpack's; brokers $(median ${kcpu[$f]}) µs"
		awk -v r="$(ratio "$med" "$msgpack_med")" 'BEGIN{exit !(r >= 0.9)}' || verdict=FAIL
	done
	[ "$lost_total" -eq 0 ] || verdict=FAIL
	echo "target (JSON and 3 headers >= 0.9 of msgpack, zero loss): $verdict (records lost or unaccounted: $lost_total)"
	exit 0
fi

echo "kproxy benchmark: $CONNS connections, ${DURATION}s per run, 200-byte msgpack bodies, keys from 10,000, $(nproc) cores"
row "" "req/s" "p50 ms" "p99 ms" "/bare" "2xx (wrk)" "200 (proxy)" "in kafka" "lost" "cpu µs" "wrk µs" "kafka µs"
bare_rps=() kgo_rps=() kgo_p99=() kgo_cpu=() proxy_rps=() proxy_p50=() proxy_p99=() proxy_cpu=()
bare_cpu=() bare_wrk=() proxy_wrk=() proxy_kafka=() kgo_wrk=() kgo_kafka=()
for r in $(seq "$ROUNDS"); do
	t0=$(cpu_ticks "$bare_pid")
	run_wrk "http://127.0.0.1:$BARE_PORT" bench 1
	bare=$RPS
	# The bare server answers every request: wrk's count is its count.
	us=$(per_req $(($(cpu_ticks "$bare_pid") - t0)) "$OK") wus=$(per_req "$WRK_TICKS" "$OK")
	bare_rps+=("$RPS") bare_cpu+=("$us") bare_wrk+=("$wus")
	row "bare fasthttp #$r" "$RPS" "$P50" "$P99" "1.00" "$OK" "" "" "" "$us" "$wus"
	# kgoproxy and kproxy take turns at going first.
	for who in $([ $((r % 2)) = 1 ] && echo "kgo kproxy" || echo "kproxy kgo"); do
		if [ "$who" = kgo ]; then
			t0=$(cpu_ticks "$kgo_pid") k0=$(cpu_ticks "$devstack_pid")
			kgo_run "bench_kgo_r$r"
			us=$(per_req $(($(cpu_ticks "$kgo_pid") - t0)) "$ANSWERED")
			kus=$(per_req $(($(cpu_ticks "$devstack_pid") - k0)) "$ANSWERED") wus=$(per_req "$WRK_TICKS" "$ANSWERED")
			kgo_rps+=("$RPS") kgo_p99+=("$P99") kgo_cpu+=("$us") kgo_wrk+=("$wus") kgo_kafka+=("$kus")
			row "kgoproxy acks=1 #$r" "$RPS" "$P50" "$P99" "$(ratio "$RPS" "$bare")" "$OK" "$ANSWERED" "$INKAFKA" "$LOST" "$us" "$wus" "$kus"
		else
			t0=$(cpu_ticks "$kproxy_pid") k0=$(cpu_ticks "$devstack_pid")
			kproxy_run "bench_acks1_r$r" 1
			us=$(per_req $(($(cpu_ticks "$kproxy_pid") - t0)) "$ANSWERED")
			kus=$(per_req $(($(cpu_ticks "$devstack_pid") - k0)) "$ANSWERED") wus=$(per_req "$WRK_TICKS" "$ANSWERED")
			proxy_rps+=("$RPS") proxy_p50+=("$P50") proxy_p99+=("$P99") proxy_cpu+=("$us") proxy_wrk+=("$wus") proxy_kafka+=("$kus")
			row "kproxy acks=1 #$r" "$RPS" "$P50" "$P99" "$(ratio "$RPS" "$bare")" "$OK" "$ANSWERED" "$INKAFKA" "$LOST" "$us" "$wus" "$kus"
		fi
	done
done
bare_med=$(median "${bare_rps[@]}")
for acks in 0 -1; do
	topic=bench_acks0
	[ "$acks" = -1 ] && topic=bench_acksall
	kproxy_run "$topic" "$acks"
	row "kproxy acks=$acks" "$RPS" "$P50" "$P99" "$(ratio "$RPS" "$bare_med")" "$OK" "$ANSWERED" "$INKAFKA" "$LOST"
done

rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$kproxy_pid/status")
kgo_med=$(median "${kgo_rps[@]}")
med_rps=$(median "${proxy_rps[@]}")
med_p50=$(median "${proxy_p50[@]}")
med_p99=$(median "${proxy_p99[@]}")
to_bare=$(ratio "$med_rps" "$bare_med")
to_kgo=$(ratio "$med_rps" "$kgo_med")
echo
echo "acks=1 medians of $ROUNDS rounds: bare fasthttp $bare_med req/s, kgoproxy $kgo_med req/s (p99 $(median "${kgo_p99[@]}") ms)," \
	"kproxy $med_rps req/s (p50 ${med_p50} ms, p99 ${med_p99} ms)"
echo "kproxy / bare fasthttp: $to_bare; kproxy / kgoproxy: $to_kgo; kgoproxy / bare fasthttp: $(ratio "$kgo_med" "$bare_med")"
echo "CPU per request answered 200 (user + system, medians): kgoproxy $(median "${kgo_cpu[@]}") µs, kproxy $(median "${proxy_cpu[@]}") µs;" \
	"kproxy / kgoproxy $(ratio "$(median "${proxy_cpu[@]}")" "$(median "${kgo_cpu[@]}")")"
echo "kproxy peak RSS: $((rss_kb / 1024)) MiB"
# The machine's budget for 0.6 of the bare server: every core busy, a
# request may cost all processes together cores / (0.6 x bare rate).
cores=$(nproc)
awk -v c="$cores" -v bare="$bare_med" -v bs="$(median "${bare_cpu[@]}")" -v bw="$(median "${bare_wrk[@]}")" \
	-v kw="$(median "${proxy_wrk[@]}")" -v kk="$(median "${proxy_kafka[@]}")" -v kp="$(median "${proxy_cpu[@]}")" \
	-v gw="$(median "${kgo_wrk[@]}")" -v gk="$(median "${kgo_kafka[@]}")" -v gp="$(median "${kgo_cpu[@]}")" 'BEGIN {
	budget = c * 1e6 / (0.6 * bare)
	printf "CPU per request (medians, µs): bare fasthttp %.1f + wrk %.1f; kgoproxy %.1f + wrk %.1f + brokers %.1f = %.1f; kproxy %.1f + wrk %.1f + brokers %.1f = %.1f\n", bs, bw, gp, gw, gk, gp + gw + gk, kp, kw, kk, kp + kw + kk
	printf "0.6 of the bare server on %d cores leaves %.1f µs per request for all processes: %.1f for the proxy after wrk and the brokers (kproxy uses %.1f, kgoproxy %.1f)\n", c, budget, budget - kw - kk, kp, gp
}'
verdict=PASS
awk -v r="$to_bare" 'BEGIN{exit !(r >= 0.6)}' || verdict=FAIL
awk -v r="$to_kgo" 'BEGIN{exit !(r >= 1.0)}' || verdict=FAIL
awk -v p="$med_p99" 'BEGIN{exit !(p <= 5)}' || verdict=FAIL
[ "$lost_total" -eq 0 ] || verdict=FAIL
[ "$errors_total" -eq 0 ] || verdict=FAIL
echo "target (>= 0.6 of bare, >= 1.0 of kgoproxy, p99 <= 5 ms, zero loss, no error answers): $verdict (records lost or unaccounted, kproxy and kgoproxy: $lost_total; non-2xx answers and socket errors, every run: $errors_total)"
