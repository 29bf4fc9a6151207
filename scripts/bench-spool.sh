#!/usr/bin/env bash
# kproxy's spool against the disk's ceiling and against franz-go alone.
#
# One kfake broker (bin/devstack -no-zk -brokers 1) and kproxy with
# spool_dir on the same disk as everything else here (spool_after_ms 500).
# Each of ROUNDS rounds:
#
# (i) 202 throughput. Kafka is frozen (SIGSTOP to devstack: connections
#     stay open, nothing is answered, as in a network partition), one
#     record is sent and spooled after spool_after_ms (202): from then on
#     the topic has records in the spool, so every new record of it goes
#     straight to the spool without waiting — the run measures the spool's
#     write path, not the wait. wrk, 64 connections, DURATION s,
#     POST /commit?acks=-1 with the 200-byte keyed bodies of
#     bench-kproxy.lua: every answer must be 202. kproxy's syncs during the
#     run are counted by the kernel (perf stat -e
#     syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -p PID: a group
#     commit inside the zeros the spool writes ahead of its entries is an
#     fdatasync; kproxy has no metric for them), records per sync = spooled
#     records / (fsyncs + fdatasyncs). Then scripts/spoolloop, the disk's ceiling: one
#     goroutine appending the same entries (lib/spool's bytes for a 200-byte
#     value) to one file with write + fsync, -group records per fsync, with
#     the group kproxy achieved and with 64. The order of kproxy and the loop
#     alternates between rounds. Right after kproxy, the same wrk command
#     against scripts/bareserver -spooled, a fasthttp server that reads
#     the body and answers 202 {"spooled":true} doing nothing else: the
#     HTTP ceiling of this machine (wrk, the loopback and fasthttp on the
#     same cores). Columns "bare/s" and "/bare": its rate, and kproxy's
#     202 rate divided by it — next to "/loop", the disk's ceiling.
# (ii) drain rate. The records of (i) are in the spool (N); Kafka is thawed
#     (SIGCONT); the time from then until the spool is empty (kproxy's
#     /health, polled every 10 ms from bash without starting a process:
#     see spool_records_now).
#     Then scripts/preload -acks -1 (kgo's idempotent acks=all producer and
#     nothing else) writes the same N records of 200 bytes over 10,000 keys
#     to a fresh topic of the same broker.
#
# Targets (medians over the rounds): 202 throughput >= 0.7 of the loop at
# kproxy's group size; drain >= 0.8 of preload's rate. Records lost: every
# spooled record must be in Kafka after the drain (end offsets; the "lost"
# column is spooled minus in Kafka, negative for duplicates, which may not
# exceed kproxy_spool_duplicates_possible_total).
#
# CPU per record during the drain: kproxy's user + system time (from
# /proc/PID/stat) between SIGCONT and the empty spool, and preload's (bash's
# time), each divided by N: columns "drain µs" and "kgo µs".
# The summary gives each build's medians and kproxy's peak RSS (VmHWM).
#
#   scripts/bench-spool.sh            DURATION=10 ROUNDS=3 by default (about 2 minutes)
#   DRAIN_ONLY=1                      (i) runs kproxy only, to fill the spool: no bare server, no loop
#   KPROXY_BIN="bin/kproxy_bin /x/old/kproxy_bin"
#                                     the builds to compare (then kproxy is not built); several take turns
#                                     in each round, the first one starting in odd rounds and the last in
#                                     even ones, each with its own spool and topic
#   PROFILE_DIR=dir                   saves a CPU profile of each drain (/debug/pprof/profile, 3 s from
#                                     just before SIGCONT) as dir/drain-rROUND-bBUILD.pprof, and one of
#                                     each 202 run (from 2 s into it to 1 s before its end) as
#                                     dir/spool-rROUND-bBUILD.pprof
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME with a "." (the locale's decimal point otherwise), and awk's numbers
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg wrk wrk
ensure_pkg curl curl
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
DRAIN_ONLY=${DRAIN_ONLY:-}
PROFILE_DIR=${PROFILE_DIR:-}
KPROXY_BIN_SET=${KPROXY_BIN:-}
read -r -a builds <<<"${KPROXY_BIN:-bin/kproxy_bin}"
CONNS=64
KAFKA_PORT=${KAFKA_PORT:-19192}
PROXY_PORT=${PROXY_PORT:-15130} # build b (from 0) listens on PROXY_PORT+b, ADMIN_PORT+b
ADMIN_PORT=${ADMIN_PORT:-15140}
BARE_PORT=${BARE_PORT:-15150}
((${#builds[@]} <= 10)) || { echo "KPROXY_BIN: at most 10 builds, got ${#builds[@]}" >&2; exit 1; }
ports=("$KAFKA_PORT" "$BARE_PORT")
for b in "${!builds[@]}"; do ports+=($((PROXY_PORT + b)) $((ADMIN_PORT + b))); done
need_ports "${ports[@]}"
have_perf=""
perf stat -e syscalls:sys_enter_fsync -- true >/dev/null 2>&1 && have_perf=1
TICKS=$(getconf CLK_TCK)
[ -n "$PROFILE_DIR" ] && mkdir -p "$PROFILE_DIR"

[ -n "$KPROXY_BIN_SET" ] || go build -o bin/ ./kproxy/kproxy_bin
go build -o bin/ ./scripts/devstack ./scripts/endoffsets ./scripts/preload ./scripts/spoolloop ./scripts/bareserver
new_workdir
exec 4>&2
mkfifo "$work/never" # nothing is ever written: read -t on it is a sleep without a process
exec 5<>"$work/never"

topics=""
for b in "${!builds[@]}"; do topics+="bench_b$b:4,"; done
for r in $(seq "$ROUNDS"); do
	for b in "${!builds[@]}"; do topics+="ref_r${r}_b$b:4,"; done
done
bin/devstack -no-zk -brokers 1 -dir "$work/kafka" -kafka-port "$KAFKA_PORT" -topics "${topics%,}" -ready-file "$work/ready" >"$work/devstack.log" 2>&1 &
devstack_pid=$!
pids+=($devstack_pid)
# A frozen devstack does not stop on SIGTERM: thaw it on the way out.
trap 'kill -CONT $devstack_pid 2>/dev/null; stop_pids "${pids[@]}"; rm -rf "$work"' EXIT
wait_for "kafka" 30 devstack_up "$devstack_pid"
if [ -z "$DRAIN_ONLY" ]; then
	bin/bareserver -spooled -addr "127.0.0.1:$BARE_PORT" >"$work/bare.log" 2>&1 &
	pids+=($!)
	wait_for "bare server" 30 curl -s -o /dev/null -X POST "127.0.0.1:$BARE_PORT/"
fi
kproxy_pids=()
for b in "${!builds[@]}"; do
	mkdir -p "$work/b$b"
	cat >"$work/b$b/kproxy.yaml" <<CONF
log_dir: $work/b$b/log
log_level: 2
port: $((PROXY_PORT + b))
listen_host: 127.0.0.1
admin_addr: 127.0.0.1:$((ADMIN_PORT + b))
broker_hosts: [127.0.0.1:$KAFKA_PORT]
spool_dir: $work/b$b/spool
spool_after_ms: 500
produce_timeout_ms: 3000
CONF
	"${builds[$b]}" -f "$work/b$b/kproxy.yaml" >"$work/b$b/kproxy.out" 2>&1 &
	kproxy_pids+=($!)
	pids+=($!)
	wait_for "kproxy ${builds[$b]}" 30 curl -sf "127.0.0.1:$((ADMIN_PORT + b))/health"
	# One record while Kafka is up: kproxy knows the topic's partitions (a
	# topic it never wrote to gets 503 while no broker answers: its records
	# cannot be partitioned).
	code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary 'x' "127.0.0.1:$((PROXY_PORT + b))/commit?topic=bench_b$b&key=flip&acks=-1")
	[ "$code" = 200 ] || { echo "the first record of ${builds[$b]} was answered $code, want 200" >&2; exit 1; }
done

# metric NAME: build $b's metric.
metric() {
	curl -s "127.0.0.1:$((ADMIN_PORT + b))/metrics" | awk -v m="$1" '$1 == m { printf "%d\n", $2; f = 1 } END { if (!f) print 0 }'
}
# spool_records_now: sets HREC to the records in build $b's spool, from
# the text of its /health ("(N records in the spool)", or "ok": none),
# over bash's /dev/tcp; "" when neither. The drain's wait polls this every
# 10 ms without starting a process: the curl of /metrics and its awk it
# replaces took about 47 ms of CPU per poll on two cores (20 polls: 0.94 s
# in curl and awk, 80 ms in kproxy rendering every metric), taken from the
# drain being timed, every 50 ms.
spool_records_now() {
	local line
	HREC=""
	exec 3<>"/dev/tcp/127.0.0.1/$((ADMIN_PORT + b))" || return 0
	printf 'GET /health HTTP/1.0\r\nHost: kproxy\r\n\r\n' >&3
	while IFS= read -r line <&3; do
		if [[ $line =~ \(([0-9]+)\ records\ in\ the\ spool\) ]]; then
			HREC=${BASH_REMATCH[1]}
		elif [[ $line == ok* ]]; then
			HREC=0
		fi
	done
	exec 3<&-
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
# cpu_ticks PID: its user + system time in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# per_record SECONDS N: microseconds per record.
per_record() { awk -v s="$1" -v n="$2" 'BEGIN{printf "%.2f", s*1e6/n}'; }
# ticks_s TICKS: seconds.
ticks_s() { awk -v t="$1" -v hz="$TICKS" 'BEGIN{print t/hz}'; }

# kproxy_202: sets RPS, GROUP (records per fsync, or "" without perf), SPOOLED (build $b).
kproxy_202() {
	local before out total non2xx fsyncs=""
	before=$(metric kproxy_spooled_total)
	[ -n "$have_perf" ] && perf stat -x, -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -p "${kproxy_pids[$b]}" -o "$work/perf" -- sleep "$DURATION" &
	local perf_pid=$!
	if [ -n "$PROFILE_DIR" ]; then
		(sleep 2 && curl -s -o "$PROFILE_DIR/spool-r$r-b$b.pprof" \
			"127.0.0.1:$((ADMIN_PORT + b))/debug/pprof/profile?seconds=$((DURATION > 4 ? DURATION - 3 : 1))") &
	fi
	out=$(wrk -t2 -c$CONNS -d"${DURATION}s" --timeout 10s -s scripts/bench-kproxy.lua "http://127.0.0.1:$((PROXY_PORT + b))" -- "bench_b$b" -1)
	RPS=$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
	[ -z "$non2xx" ] || { echo "kproxy answered $non2xx requests with another status than 202:" >&2; tail -5 "$work/b$b/log/kproxy.log" >&2; exit 1; }
	[ -n "$have_perf" ] && wait "$perf_pid" && fsyncs=$(awk -F, '/sys_enter_f(data)?sync/ {n += $1} END {print n + 0}' "$work/perf")
	SPOOLED=$(($(metric kproxy_spooled_total) - before))
	GROUP=""
	[ -n "$fsyncs" ] && [ "$fsyncs" -gt 0 ] && GROUP=$(awk -v s="$SPOOLED" -v f="$fsyncs" 'BEGIN{printf "%d", s/f + 0.5}')
	return 0
}
# bare_202: sets BARE, the bare server's 202s per second (same wrk command).
bare_202() {
	local out non2xx
	out=$(wrk -t2 -c$CONNS -d"${DURATION}s" --timeout 10s -s scripts/bench-kproxy.lua "http://127.0.0.1:$BARE_PORT" -- bench -1)
	BARE=$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
	[ -z "$non2xx" ] || { echo "the bare server answered $non2xx requests with another status than 202" >&2; exit 1; }
	return 0
}
# loop_rate N GROUP: sets LOOP, the loop's records/s.
loop_rate() { LOOP=$(bin/spoolloop -dir "$work" -n "$1" -group "$2" | awk '{for (i = 1; i < NF; i++) if ($(i+1) == "records/s,") print $i}'); }

echo "kproxy spool benchmark: $CONNS connections, ${DURATION}s per run, 200-byte bodies over 10,000 keys, acks=-1, one kfake broker, $(nproc) cores, disk of $work: $(df --output=source "$work" | tail -1)"
for b in "${!builds[@]}"; do echo "build b$b: ${builds[$b]}"; done
row() { printf '%-8s %10s %8s %12s %12s %8s %8s %10s %6s | %9s %8s %12s %12s %6s %8s %8s %6s\n' "$@"; }
row round "202/s" group "loop@group" "loop@64" "/loop" "/loop64" "bare/s" "/bare" records "drain s" "drain rec/s" "kgo rec/s" "/kgo" "drain µs" "kgo µs" lost
declare -A r202=() rloop=() rloop64=() rbare=() rdrain=() rrate=() rcpu=() rkcpu=()
lost_total=0 unknown=0
for r in $(seq "$ROUNDS"); do
	order=("${!builds[@]}")
	((r % 2)) || order=($(printf '%s\n' "${order[@]}" | tac))
	for b in "${order[@]}"; do
		kill -STOP "$devstack_pid"
		# Stopped (state T) before the record that must be spooled.
		until [ "$(sed 's/.*) //' "/proc/$devstack_pid/stat" | cut -d' ' -f1)" = T ]; do sleep 0.01; done
		# A record already written to the frozen broker's connection may get
		# 504 (may have been written) at produce_timeout_ms instead of 202;
		# the topic spools all the same, and the next record shows it.
		for try in 1 2 3; do
			code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary 'x' "127.0.0.1:$((PROXY_PORT + b))/commit?topic=bench_b$b&key=flip&acks=-1")
			[ "$code" = 202 ] && break
			[ "$code" = 504 ] || { echo "round $r: a record with Kafka frozen was answered $code, want 202 or 504" >&2; exit 1; }
			unknown=$((unknown + 1))
	done
	[ "$code" = 202 ] || { echo "round $r: no 202 with Kafka frozen" >&2; exit 1; }
	# (i), the order alternating
	BARE="" loop_g="" loop_64="" GROUP=""
	if [ -n "$DRAIN_ONLY" ]; then
		kproxy_202
	elif ((r % 2)); then
		kproxy_202
		bare_202
		n=$((SPOOLED < 200000 ? SPOOLED : 200000))
		loop_rate "$n" "${GROUP:-64}"; loop_g=$LOOP
		loop_rate "$n" 64; loop_64=$LOOP
	else
		loop_rate 100000 64; loop_64=$LOOP
		bare_202
		kproxy_202
		n=$((SPOOLED < 200000 ? SPOOLED : 200000))
		loop_rate "$n" "${GROUP:-64}"; loop_g=$LOOP
	fi
	# (ii)
	N=$(metric kproxy_spool_records)
	prof_pid=""
	if [ -n "$PROFILE_DIR" ]; then
		curl -s -o "$PROFILE_DIR/drain-r$r-b$b.pprof" "127.0.0.1:$((ADMIN_PORT + b))/debug/pprof/profile?seconds=3" &
		prof_pid=$!
		sleep 0.1
	fi
	c0=$(cpu_ticks "${kproxy_pids[$b]}")
	t0=${EPOCHREALTIME/./}
	kill -CONT "$devstack_pid"
	while spool_records_now; [ "$HREC" != 0 ]; do
		((${EPOCHREALTIME/./} - t0 < 300000000)) || { echo "round $r: the spool did not drain in 300 s" >&2; exit 1; }
		read -r -t 0.01 -u 5 || true # 10 ms, no process either
	done
	drain_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
	drain_cpu=$(per_record "$(ticks_s $(($(cpu_ticks "${kproxy_pids[$b]}") - c0)))" "$N")
	[ -z "$prof_pid" ] || wait "$prof_pid"
	in_kafka=$(bin/endoffsets -brokers "127.0.0.1:$KAFKA_PORT" -topic "bench_b$b")
	t1=${EPOCHREALTIME/./}
	kgo_cpu=$( { TIMEFORMAT='%3U %3S'; time bin/preload -brokers "127.0.0.1:$KAFKA_PORT" -topic "ref_r${r}_b$b" -records "$N" -size 200 -keys 10000 -acks -1 >/dev/null; } 2>&1 )
	kgo_ms=$(((${EPOCHREALTIME/./} - t1) / 1000))
	kgo_cpu=$(per_record "$(awk '{print $1 + $2}' <<<"$kgo_cpu")" "$N")
	drain_rate=$(awk -v n="$N" -v ms="$drain_ms" 'BEGIN{printf "%d", n*1000/ms}')
	kgo_rate=$(awk -v n="$N" -v ms="$kgo_ms" 'BEGIN{printf "%d", n*1000/ms}')
	r202[$b]+="$RPS " rdrain[$b]+="$(ratio "$drain_rate" "$kgo_rate") " rrate[$b]+="$drain_rate " rcpu[$b]+="$drain_cpu " rkcpu[$b]+="$kgo_cpu "
	if [ -z "$DRAIN_ONLY" ]; then
		rloop[$b]+="$(ratio "$RPS" "$loop_g") " rloop64[$b]+="$(ratio "$RPS" "$loop_64") " rbare[$b]+="$(ratio "$RPS" "$BARE") "
	fi
	# Every record kproxy spooled since the start is in its topic: the
	# spooled total (the flip records included) and the first record
	# against the end offsets.
	lost=$(($(metric kproxy_spooled_total) + 1 - in_kafka))
	# More in Kafka than spooled: duplicates, allowed for records whose
	# request got no answer when Kafka froze, and the records answered 504.
	((lost >= 0 || -lost <= $(metric kproxy_spool_duplicates_possible_total) + unknown)) || lost_total=$((lost_total - lost))
	((lost < 0)) || lost_total=$((lost_total + lost))
	rl="-" rl64="-" rb="-"
	if [ -z "$DRAIN_ONLY" ]; then rl=$(ratio "$RPS" "$loop_g") rl64=$(ratio "$RPS" "$loop_64") rb=$(ratio "$RPS" "$BARE"); fi
	row "#$r b$b" "$RPS" "${GROUP:-?}" "${loop_g:--}" "${loop_64:--}" "$rl" "$rl64" "${BARE:--}" "$rb" \
		"$N" "$(awk -v ms="$drain_ms" 'BEGIN{printf "%.2f", ms/1000}')" "$drain_rate" "$kgo_rate" "$(ratio "$drain_rate" "$kgo_rate")" "$drain_cpu" "$kgo_cpu" "$lost"
	done
done
echo
verdict=PASS
for b in "${!builds[@]}"; do
	to_kgo=$(median ${rdrain[$b]})
	line="b$b medians of $ROUNDS rounds: kproxy $(median ${r202[$b]}) records/s answered 202"
	if [ -z "$DRAIN_ONLY" ]; then
		to_loop=$(median ${rloop[$b]})
		line+=", $to_loop of the fsync loop at kproxy's group size ($(median ${rloop64[$b]}) of the loop at 64 per fsync), $(median ${rbare[$b]}) of a bare HTTP server answering 202"
		awk -v r="$to_loop" 'BEGIN{exit !(r >= 0.7)}' || verdict=FAIL
	fi
	echo "$line; drain $(median ${rrate[$b]}) records/s, $to_kgo of franz-go's idempotent acks=-1 producer alone, $(median ${rcpu[$b]}) µs of kproxy's CPU per record against $(median ${rkcpu[$b]}) µs of franz-go's; kproxy's peak RSS $(($(awk '/VmHWM/ {print $2}' "/proc/${kproxy_pids[$b]}/status") / 1024)) MB"
	awk -v r="$to_kgo" 'BEGIN{exit !(r >= 0.8)}' || verdict=FAIL
done
[ -n "$have_perf" ] || echo "(perf stat cannot count fsyncs here: the loop used 64 records per fsync for kproxy's group)"
[ "$lost_total" -eq 0 ] || verdict=FAIL
target="drain >= 0.8 of franz-go, nothing lost"
[ -n "$DRAIN_ONLY" ] || target="202s >= 0.7 of the loop, $target"
echo "target ($target, every build): $verdict (records spooled and not in kafka, or unexplained duplicates: $lost_total)"
