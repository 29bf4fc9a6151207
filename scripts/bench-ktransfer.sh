#!/usr/bin/env bash
# ktransfer throughput against the HTTP ceiling of this machine and against
# the shortest pusher on the same Kafka library.
#
# 200,000 records of 200 bytes over 10,000 keys, preloaded into a
# 4-partition topic; 100 workers; a local sink (scripts/sink) that counts
# the pushes and checks per-key order. Every rate is the sink's: distinct
# records per second from its first push to its last.
#
# 1. Fast sink. ROUNDS rounds, each running one after the other: the client
#    loop (scripts/httploop: the same number of POSTs, 100 at a time, from a
#    plain fasthttp loop: the HTTP ceiling), kgopusher (scripts/kgopusher:
#    franz-go consumer, worker hash(key) % 100, no commits, no window) and
#    ktransfer (worker_num 100, window_size 1000, each rule of DISPATCHES).
#    Ratios are of the medians: on a shared machine one round's rate swings
#    by a quarter either way. Targets: ktransfer >= 0.85 of kgopusher and
#    >= 0.8 of the client loop; every record delivered exactly once (as many
#    pushes as records, each record once), no per-key order violation.
# 2. Latency-bound: the sink answers after 5 ms (held to within tens of
#    microseconds; it prints the mean it held pushes); the ceiling is
#    worker_num / 5 ms = 20,000/s, a sustained rate, so it is compared with
#    the rate between the 10% and 90% marks of the records (the whole-run
#    rate, ramp-up and drain included, is printed too). Target with
#    dispatch: idle_worker: >= 0.85. The client loop and kgopusher against
#    the same sink are printed too.
# Peak RSS: ktransfer's highest VmHWM over its runs.
# CPU per record: user + system time of kgopusher and of ktransfer (start-up
# included), of ZooKeeper during ktransfer's run, and of the broker (the dev
# stack's process: kfake) and the sink during each pusher's run, over the
# records; and the
# share of the machine's CPU left idle during each pusher's run (none left:
# the rates compare CPU costs, not latencies). From ktransfer's /metrics (its admin port,
# ADMIN_PORT): its ZooKeeper commits, their mean duration, and how long
# reading waited for a full window (ktransfer_window_full_seconds_total,
# when the build has it). PROFILE_DIR=DIR saves a 3 s CPU profile of each
# fast-sink ktransfer run there, and one of each fast-sink kgopusher run
# (go tool pprof).
#
#   scripts/bench-ktransfer.sh    RECORDS=200000 SLOW_RECORDS=100000 ROUNDS=3 DISPATCHES=idle_worker
#   DISPATCHES="idle_worker hash" adds the other rule; WINDOW=N overrides window_size (1000);
#   WARMUP=N sets how many uncounted ktransfer runs warm ZooKeeper first (3; 0: none).
#   ROUNDS=0 runs the 5 ms sink only.
#   KTRANSFER_BIN="old/ktransfer_bin new/ktransfer_bin" compares builds in the same rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
ensure_pkg curl curl
ensure_pkg pgrep procps
KTRANSFER_BIN_SET=${KTRANSFER_BIN:-}
# Another build to compare (then ktransfer is not built), or several,
# space-separated: each round runs each of them, in turn, first.
read -r -a builds <<<"${KTRANSFER_BIN:-bin/ktransfer_bin}"
RECORDS=${RECORDS:-200000}
ROUNDS=${ROUNDS:-3}
SLOW_RECORDS=${SLOW_RECORDS:-100000}
DISPATCHES=${DISPATCHES:-idle_worker}
WORKERS=100
ZK_PORT=${ZK_PORT:-12182}
KAFKA_PORT=${KAFKA_PORT:-19095}
SINK_PORT=${SINK_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-18091}
need_ports $ZK_PORT $(kafka_ports "$KAFKA_PORT") $SINK_PORT $ADMIN_PORT
export KTRANSFER_ADMIN=127.0.0.1:$ADMIN_PORT
TICKS=$(getconf CLK_TCK)
[ -n "${KTRANSFER_BIN_SET:-}" ] || go build -o bin/ ./ktransfer/ktransfer_bin
go build -o bin/ ./scripts/devstack ./scripts/sink ./scripts/preload ./scripts/httploop ./scripts/kgopusher
new_workdir
exec 4>&2 # for failures inside wait_for, which silences its command

bin/devstack -dir "$work/devstack" -zk-port "$ZK_PORT" -kafka-port "$KAFKA_PORT" -topics bench:4,slow:4 \
	-ready-file "$work/ready" >"$work/devstack.log" 2>&1 &
devstack_pid=$!
pids+=($devstack_pid)
wait_for "the dev stack" 60 devstack_up "$devstack_pid"
zk_pid=$(pgrep -P "$devstack_pid" java)
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

# delivered N: sets RATE, STEADY and CHECK (what the sink saw of N
# records) and returns false unless each was pushed exactly once in key
# order.
delivered() {
	local n=$1 pushes distinct violations
	RATE=$(stat rate) STEADY=$(stat steady_rate)
	pushes=$(stat pushes) distinct=$(stat distinct) violations=$(stat order_violations)
	CHECK="$distinct/$n delivered, $((pushes - distinct)) repeated, $violations order violations"
	[ "$distinct" -eq "$n" ] && [ "$pushes" -eq "$n" ] && [ "$violations" -eq 0 ]
}

# run_loop N: the client loop, N POSTs.
run_loop() { bin/httploop -url "http://127.0.0.1:$SINK_PORT/push" -n "$1" -c $WORKERS -size 200 >"$work/loop.out"; }

# cpu_ticks PID: its user + system time in clock ticks (the 14th and 15th
# fields of its stat, the 12th and 13th after the command's ")").
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# machine: "idle total" ticks of every CPU so far (idle is idle + iowait,
# total is user to steal, fields 2-9: guest and guest_nice, fields 10-11,
# are already counted in user and nice); idle_since BEFORE: the share (%)
# of the machine's CPU left idle since BEFORE.
machine() { awk '$1 == "cpu" {t = 0; for (i = 2; i <= 9; i++) t += $i; print $5 + $6, t}' /proc/stat; }
idle_since() {
	machine | awk -v b="$1" 'BEGIN{split(b, o, " ")} {printf "%.0f", ($1 - o[1]) * 100 / ($2 - o[2])}'
}

# per_record SECONDS N: microseconds per record (SECONDS may be TICKS/TICKS_PER_SECOND).
per_record() { awk -v s="$1" -v n="$2" 'BEGIN{split(s, f, "/"); if (f[2]) s = f[1] / f[2]; printf "%.1f", s * 1e6 / n}'; }

# others_since KAFKA_TICKS SINK_TICKS N: "Kafka A, sink B": the CPU per
# record the broker (the dev stack's own process: kfake) and the sink spent
# since those readings.
others_since() {
	echo "Kafka $(per_record "$(( $(cpu_ticks "$devstack_pid") - $1 ))/$TICKS" "$3"), sink $(per_record "$(( $(cpu_ticks "$sink_pid") - $2 ))/$TICKS" "$3")"
}

kgo_profiles=0
# run_kgopusher TOPIC N: sets CPU_US (CPU per record), OTHERS and IDLE.
run_kgopusher() {
	local TIMEFORMAT='%3U %3S' before kafka_before sink_before
	before=$(machine) kafka_before=$(cpu_ticks "$devstack_pid") sink_before=$(cpu_ticks "$sink_pid")
	local profile=()
	if [ -n "${PROFILE_DIR:-}" ] && [ "$1" = bench ]; then
		mkdir -p "$PROFILE_DIR"
		profile=(-cpuprofile "$PROFILE_DIR/kgopusher_$((++kgo_profiles)).pprof")
	fi
	{ time bin/kgopusher -brokers "127.0.0.1:$KAFKA_PORT" -topic "$1" -n "$2" -workers $WORKERS \
		-url "http://127.0.0.1:$SINK_PORT/push" "${profile[@]}" >"$work/kgopusher.out" 2>&1; } 2>"$work/kgopusher.time"
	IDLE=$(idle_since "$before")
	OTHERS=$(others_since "$kafka_before" "$sink_before" "$2")
	CPU_US=$(per_record "$(awk '{print $1 + $2}' "$work/kgopusher.time")" "$2")
}

# zk_requests: requests ZooKeeper has received so far (its mntr command).
zk_requests() {
	local line
	exec 5<>"/dev/tcp/127.0.0.1/$ZK_PORT"
	echo mntr >&5
	while read -r line <&5; do
		case $line in zk_packets_received*) echo "${line##*[[:space:]]}" ;; esac
	done
	exec 5<&-
}

# metric NAME: the value of the series NAME in ktransfer's /metrics, 0 when absent.
metric() {
	curl -s "$KTRANSFER_ADMIN/metrics" | awk -v n="$1" '$1 == n {v = $2} END {print v + 0}'
}

# run_ktransfer TOPIC N DISPATCH ROUND: push TOPIC to the sink with a
# module of its own (so it starts at the oldest record), stop once the sink
# has every record; sets RSS_MB, CPU_US, ZK_US (ZooKeeper's CPU per record
# meanwhile), OTHERS, IDLE and COMMITS (what its /metrics say).
run_ktransfer() {
	local topic=$1 n=$2 dispatch=$3 round=$4 before zk_before zk_requests_before kafka_before sink_before
	local name=m_${topic}_${dispatch}_$round
	mkdir -p "$work/modules"
	cat >"$work/modules/$name.yaml" <<CONF
topic: $topic
dispatch: $dispatch
protocol:
 name: http
 uri: /push/{#TOPIC}?key={#KEY}&transid={#TRANSID}
 read_timeout_ms: 0
 write_timeout_ms: 1000
 conn_timeout_ms: 1000
worker_num: $WORKERS
window_size: ${RUN_WINDOW:-${WINDOW:-1000}}
max_retry_times: -1
fail_retry_interval_ms: 200
backend_servers: [127.0.0.1:$SINK_PORT]
CONF
	local profiler=""
	if [ -n "${PROFILE_DIR:-}" ] && [ "$topic" = bench ]; then
		mkdir -p "$PROFILE_DIR"
		# Its "waiting for …" line would land in the results: only its failure (stderr) shows.
		(wait_for "the admin port" 30 curl -sf "$KTRANSFER_ADMIN/health" >/dev/null &&
			curl -s -o "$PROFILE_DIR/$name.pprof" "$KTRANSFER_ADMIN/debug/pprof/profile?seconds=3") &
		profiler=$!
	fi
	before=$(machine) zk_before=$(cpu_ticks "$zk_pid") zk_requests_before=$(zk_requests)
	kafka_before=$(cpu_ticks "$devstack_pid") sink_before=$(cpu_ticks "$sink_pid")
	push_with_ktransfer "$name" "$n" 600 stat distinct
	IDLE=$(idle_since "$before")
	OTHERS=$(others_since "$kafka_before" "$sink_before" "$n")
	ZK_US=$(per_record "$(( $(cpu_ticks "$zk_pid") - zk_before ))/$TICKS" "$n")
	ZK_REQUESTS=$(( $(zk_requests) - zk_requests_before ))
	RSS_MB=$(( $(awk '/VmHWM/ {print $2}' "/proc/$ktransfer_pid/status") / 1024 ))
	# utime and stime: the 14th and 15th fields, the 12th and 13th after the command's ")"
	CPU_US=$(per_record "$(cpu_ticks "$ktransfer_pid")/$TICKS" "$n")
	local label="{module=\"$name\"}"
	local commits sum full
	commits=$(metric "ktransfer_commit_duration_seconds_count$label")
	sum=$(metric "ktransfer_commit_duration_seconds_sum$label")
	full=$(metric "ktransfer_window_full_seconds_total$label")
	COMMITS="$ZK_REQUESTS ZooKeeper requests, $commits commits of $(awk -v s="$sum" -v c="$commits" 'BEGIN{printf "%.2f", c ? s * 1000 / c : 0}') ms, window full $(awk -v f="$full" 'BEGIN{printf "%.2f", f}') s"
	[ -z "$profiler" ] || wait "$profiler" || true
	stop_pids "$ktransfer_pid"
}

# label BUILD DISPATCH: how a ktransfer run is named.
label() {
	if [ ${#builds[@]} -gt 1 ]; then echo "ktransfer ${builds[$1]}, dispatch: $2"; else echo "ktransfer, dispatch: $2"; fi
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
atleast() { awk -v r="$1" -v t="$2" 'BEGIN{exit !(r >= t)}'; }

echo "ktransfer benchmark, $(nproc) cores: $RECORDS records of 200 bytes over 10,000 keys, 4 partitions, $WORKERS workers, window_size ${WINDOW:-1000}"
echo "fast sink, $ROUNDS rounds (each: the client loop, kgopusher, ktransfer with dispatch: $DISPATCHES); records/s at the sink"
declare -A kt_rates=()
loops=() kgos=() kgo_cpus=() rss=0 verdict=PASS
declare -A kt_cpus=() kt_zks=()
WARMUP=${WARMUP:-3}
if [ "$WARMUP" -gt 0 ]; then
	# ktransfer commits to ZooKeeper; the other two do not. A ZooKeeper in
	# service is warm; the fresh one here spends three to six times the CPU
	# per write (0.4-1 ms against 0.16 ms for a fenced multi-op of four
	# partitions, measured alone) until its JIT has compiled the write
	# path, which takes about 10,000 writes. Each warm-up run has a window
	# of worker_num + 20, so that it commits about every 50 records (a
	# write at a time: a smaller window does not write faster): about
	# 4,000 writes through ktransfer's own commit path, in about 5 s.
	warm_window=$((WORKERS + 20))
	echo "  warm-up (not counted): $WARMUP ktransfer runs with window_size $warm_window warm ZooKeeper's JVM (WARMUP=N runs, 0 skips it)"
	KTRANSFER_BIN=${builds[0]}
	for w in $(seq "$WARMUP"); do
		start_sink
		RUN_WINDOW=$warm_window run_ktransfer bench "$RECORDS" idle_worker "warmup$w"
		delivered "$RECORDS" || verdict=FAIL
		echo "    $RATE records/s ($CHECK); ZooKeeper $ZK_US µs CPU/record; $COMMITS"
	done
fi
for r in $(seq "$ROUNDS"); do
	start_sink
	run_loop "$RECORDS"
	loops+=("$(stat rate)")
	line="  round $r: client loop ${loops[-1]}"
	start_sink
	run_kgopusher bench "$RECORDS"
	delivered "$RECORDS" || verdict=FAIL
	kgos+=("$RATE")
	kgo_cpus+=("$CPU_US")
	line+=", kgopusher $RATE ($CHECK; $CPU_US µs CPU/record, $OTHERS, machine $IDLE% idle)"
	echo "$line"
	for i in "${!builds[@]}"; do
		b=$(( (i + r) % ${#builds[@]} )) # who goes first rotates
		KTRANSFER_BIN=${builds[$b]}
		for dispatch in $DISPATCHES; do
			start_sink
			run_ktransfer bench "$RECORDS" "$dispatch" "${r}_$b"
			delivered "$RECORDS" || verdict=FAIL
			kt_rates[$dispatch/$b]+="$RATE "
			kt_cpus[$dispatch/$b]+="$CPU_US "
			kt_zks[$dispatch/$b]+="$ZK_US "
			rss=$((RSS_MB > rss ? RSS_MB : rss))
			echo "    $(label "$b" "$dispatch") $RATE ($CHECK; $CPU_US µs CPU/record, ZooKeeper $ZK_US, $OTHERS, machine $IDLE% idle; $COMMITS)"
		done
	done
done
if [ "$ROUNDS" -gt 0 ]; then # ROUNDS=0: the 5 ms sink only
	loop_rate=$(median "${loops[@]}")
	kgo_rate=$(median "${kgos[@]}")
	printf '%-36s %7s records/s\n' "client loop ($WORKERS workers)" "$loop_rate"
	printf '%-36s %7s records/s, %s of the client loop; %s µs CPU/record\n' "kgopusher ($WORKERS workers)" "$kgo_rate" \
		"$(ratio "$kgo_rate" "$loop_rate")" "$(median "${kgo_cpus[@]}")"
	for b in "${!builds[@]}"; do
		for dispatch in $DISPATCHES; do
			k=$dispatch/$b
			# shellcheck disable=SC2086 # the rates are one word each
			rate=$(median ${kt_rates[$k]})
			to_kgo=$(ratio "$rate" "$kgo_rate") to_loop=$(ratio "$rate" "$loop_rate")
			# shellcheck disable=SC2086
			printf '%-36s %7s records/s, %s of kgopusher, %s of the client loop; %s µs CPU/record, ZooKeeper %s\n' \
				"$(label "$b" "$dispatch")" "$rate" "$to_kgo" "$to_loop" "$(median ${kt_cpus[$k]})" "$(median ${kt_zks[$k]})"
			if [ "$dispatch" = idle_worker ]; then
				this=$verdict
				atleast "$to_kgo" 0.85 || this=FAIL
				atleast "$to_loop" 0.8 || this=FAIL
				echo "  target (>= 0.85 of kgopusher, >= 0.8 of the client loop, every record exactly once, order intact): $this"
			fi
		done
	done

fi
echo
ceiling=$((WORKERS * 200)) # worker_num / 5 ms
echo "sink answering after 5 ms, $SLOW_RECORDS records: ceiling worker_num / 5 ms = $ceiling/s (steady: between the 10% and 90% marks)"
start_sink 5ms
loop_sink_before=$(cpu_ticks "$sink_pid")
run_loop "$SLOW_RECORDS"
printf '%-36s %7s records/s steady, %s of the ceiling; pushes held %s µs on average; sink %s µs CPU/record\n' \
	"client loop ($WORKERS workers)" "$(stat steady_rate)" "$(ratio "$(stat steady_rate)" $ceiling)" "$(stat delay_mean_us)" \
	"$(per_record "$(( $(cpu_ticks "$sink_pid") - loop_sink_before ))/$TICKS" "$SLOW_RECORDS")"
start_sink 5ms
run_kgopusher slow "$SLOW_RECORDS"
delivered "$SLOW_RECORDS" || true
printf '%-36s %7s records/s steady, %s of the ceiling (%s; %s µs CPU/record, %s, machine %s%% idle)\n' "kgopusher ($WORKERS workers)" \
	"$STEADY" "$(ratio "$STEADY" $ceiling)" "$CHECK" "$CPU_US" "$OTHERS" "$IDLE"
for b in "${!builds[@]}"; do
	KTRANSFER_BIN=${builds[$b]}
	for dispatch in $DISPATCHES; do
		start_sink 5ms
		run_ktransfer slow "$SLOW_RECORDS" "$dispatch" "slow_$b"
		this=PASS
		delivered "$SLOW_RECORDS" || this=FAIL
		rss=$((RSS_MB > rss ? RSS_MB : rss))
		printf '%-36s %7s records/s steady, %s of the ceiling; %s over the whole run; pushes held %s µs (%s; %s µs CPU/record, ZooKeeper %s, %s, machine %s%% idle; %s)\n' \
			"$(label "$b" "$dispatch")" "$STEADY" "$(ratio "$STEADY" $ceiling)" "$RATE" "$(stat delay_mean_us)" "$CHECK" \
			"$CPU_US" "$ZK_US" "$OTHERS" "$IDLE" "$COMMITS"
		if [ "$dispatch" = idle_worker ]; then
			atleast "$(ratio "$STEADY" $ceiling)" 0.85 || this=FAIL
			echo "  target (>= 0.85 of worker_num / 5 ms, every record exactly once, order intact): $this"
		fi
	done
done
echo "ktransfer peak RSS ${rss} MiB"
