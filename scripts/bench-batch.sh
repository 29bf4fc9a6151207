#!/usr/bin/env bash
# kproxy's POST /batch and gRPC ProduceStream against the franz-go producer
# alone, on the same records from the same machine in the same run.
#
# scripts/batchbench sends batches of 100 records (200-byte msgpack values,
# keys from 10,000) from 16 concurrent senders: through kproxy — 16 HTTP
# connections, POST /batch?acks=1 (mode http), or 16 gRPC ProduceStream
# streams, each on a connection of its own, each request a batch, at most
# GRPC_WINDOW (1) requests of a stream awaiting their answer (mode grpc) —
# and straight to the brokers (one franz-go client, each sender a
# ProduceSync of its 100 records, with the settings of kproxy's acks=1
# client). All write to the dev stack's three kfake brokers (every topic
# with the same leader layout), each run to a fresh topic, deleted once its
# records are counted (kfake keeps records in memory: a later run would pay
# for the earlier runs' heap). ROUNDS rounds alternate them, the order
# rotating from round to round, and the ratios are of the medians, because
# a shared machine is noisy.
#
# Target: kproxy >= 0.8 of the producer alone, no record lost (after each
# run the brokers' end offsets for its topic must equal the records
# answered written).
#
# Each run also gives the CPU time per record written of each process
# (user and system): the sender (batchbench), kproxy and the brokers
# (devstack). On a machine whose cores the three share, records/s follows
# the CPU a record costs in all of them, and swings with whatever else
# runs; the CPU per record holds still.
#
#   scripts/bench-batch.sh         DURATION=10 ROUNDS=3 ACKS=1 MODES="http grpc" GRPC_WINDOW=1 by default
#
# PROFILE_DIR=DIR saves a CPU profile of kproxy in each of its runs (its
# admin's /debug/pprof/profile, from 2 s into the run to 1 s before its
# end) as DIR/kproxy_TOPIC.pprof (go tool pprof).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg curl curl
KPROXY_BIN_SET=${KPROXY_BIN:-}
KPROXY_BIN=${KPROXY_BIN:-bin/kproxy_bin} # another build to compare (then kproxy is not built)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
ACKS=${ACKS:-1}
MODES=${MODES:-http grpc}
GRPC_WINDOW=${GRPC_WINDOW:-1}
CONNS=16
RECORDS=100
SIZE=200
KAFKA_PORT=${KAFKA_PORT:-19192}
PROXY_PORT=${PROXY_PORT:-15130}
ADMIN_PORT=${ADMIN_PORT:-15140}
GRPC_PORT=${GRPC_PORT:-15131}
need_ports $(kafka_ports "$KAFKA_PORT") $PROXY_PORT $ADMIN_PORT $GRPC_PORT

[ -n "${KPROXY_BIN_SET:-}" ] || go build -o bin/ ./kproxy/kproxy_bin
go build -o bin/ ./scripts/devstack ./scripts/endoffsets ./scripts/batchbench
new_workdir
exec 4>&2 # for failures inside wait_for, which silences its command

topics=""
for r in $(seq "$ROUNDS"); do
	topics+="batch_kgo_r$r:4,"
	for m in $MODES; do topics+="batch_${m}_r$r:4,"; done
done
bin/devstack -no-zk -dir "$work/kafka" -kafka-port "$KAFKA_PORT" -topics "${topics%,}" -ready-file "$work/ready" >"$work/devstack.log" 2>&1 &
devstack_pid=$!
pids+=($devstack_pid)
brokers=$(printf "127.0.0.1:%s," $(kafka_ports "$KAFKA_PORT") | sed "s/,$//")
cat >"$work/kproxy.yaml" <<CONF
log_dir: $work/log
log_level: 2
port: $PROXY_PORT
grpc_port: $GRPC_PORT
listen_host: 127.0.0.1
read_timeout_ms: 5000
write_timeout_ms: 5000
admin_addr: 127.0.0.1:$ADMIN_PORT
broker_hosts: [${brokers//,/, }]
CONF
wait_for "kafka" 30 devstack_up "$devstack_pid"
"$KPROXY_BIN" -f "$work/kproxy.yaml" >"$work/kproxy.out" 2>&1 &
kproxy_pid=$!
pids+=($kproxy_pid)
wait_for "kproxy" 30 curl -sf "127.0.0.1:$ADMIN_PORT/health"

# cpu_ticks PID: the process's CPU time so far (user + system), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
# per_record TICKS RECORDS: microseconds of CPU per record.
per_record() { awk -v t="$1" -v n="$2" -v us="$TICK_US" 'BEGIN{printf "%.2f", n ? t * us / n : 0}'; }

# bench MODE TOPIC: one run; sets RATE OK FAILED INKAFKA LOST and the CPU
# per record of the sender, kproxy and the brokers (CPU_SENDER, CPU_KPROXY,
# CPU_BROKERS).
lost_total=0
bench() {
	local out k0 d0 args=(-mode "$1" -topic "$2" -acks "$ACKS" -c "$CONNS" -d "${DURATION}s" -records "$RECORDS" -size "$SIZE")
	case $1 in
	http) args+=(-url "http://127.0.0.1:$PROXY_PORT") ;;
	grpc) args+=(-grpc "127.0.0.1:$GRPC_PORT" -window "$GRPC_WINDOW") ;;
	*) args+=(-brokers "$brokers") ;;
	esac
	echo "  ${DURATION}s of $1…" >&2
	if [ -n "${PROFILE_DIR:-}" ] && [ "$1" != kgo ]; then
		mkdir -p "$PROFILE_DIR"
		(sleep 2 && curl -s -o "$PROFILE_DIR/kproxy_$2.pprof" \
			"127.0.0.1:$ADMIN_PORT/debug/pprof/profile?seconds=$((DURATION > 4 ? DURATION - 3 : 1))") &
	fi
	k0=$(cpu_ticks "$kproxy_pid") d0=$(cpu_ticks "$devstack_pid")
	out=$(bin/batchbench "${args[@]}")
	RATE=$(awk '{print int($6)}' <<<"$out")
	OK=$(awk '{print $2}' <<<"$out")
	FAILED=$(awk '{print $8}' <<<"$out")
	CPU_SENDER=$(awk '{print $10}' <<<"$out")
	CPU_KPROXY=$(per_record $(($(cpu_ticks "$kproxy_pid") - k0)) "$OK")
	CPU_BROKERS=$(per_record $(($(cpu_ticks "$devstack_pid") - d0)) "$OK")
	INKAFKA=$(bin/endoffsets -brokers "$brokers" -topic "$2" -delete) # the broker's memory back for the next run
	LOST=$((OK - INKAFKA))
	lost_total=$((lost_total + (LOST < 0 ? -LOST : LOST)))
}

row() { printf '%-22s %10s %10s %7s %10s %5s %9s %9s %9s\n' "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }

declare -A label=([http]="kproxy /batch" [grpc]="kproxy gRPC stream")
echo "batch benchmark: $CONNS senders, batches of $RECORDS records of $SIZE bytes, acks=$ACKS, modes: kgo $MODES (gRPC window $GRPC_WINDOW), ${DURATION}s per run, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
row "" "records/s" "written" "failed" "in kafka" "lost" "cpu:send" "kproxy" "brokers"
kgo_rates=() kgo_cpu=()
declare -A rates=() cpus=()
# The order of the runs rotates from round to round, so that no mode always
# goes first (or last) on a machine whose load drifts.
order=(kgo $MODES)
for r in $(seq "$ROUNDS"); do
	for i in $(seq 0 $((${#order[@]} - 1))); do
		m=${order[$(((i + r - 1) % ${#order[@]}))]}
		bench "$m" "batch_${m}_r$r"
		if [ "$m" = kgo ]; then
			kgo_rates+=("$RATE") kgo_cpu+=("$(awk -v a="$CPU_SENDER" -v b="$CPU_BROKERS" 'BEGIN{print a + b}')")
			row "franz-go alone #$r" "$RATE" "$OK" "$FAILED" "$INKAFKA" "$LOST" "$CPU_SENDER" "-" "$CPU_BROKERS"
			continue
		fi
		rates[$m]+="$RATE " cpus[$m]+="$(awk -v a="$CPU_SENDER" -v b="$CPU_KPROXY" -v c="$CPU_BROKERS" 'BEGIN{print a + b + c}') "
		row "${label[$m]} #$r" "$RATE" "$OK" "$FAILED" "$INKAFKA" "$LOST" "$CPU_SENDER" "$CPU_KPROXY" "$CPU_BROKERS"
	done
done
kgo_med=$(median "${kgo_rates[@]}")
echo
echo "medians of $ROUNDS rounds (load average now $(cut -d' ' -f1-3 /proc/loadavg)):"
echo "  franz-go alone: $kgo_med records/s, CPU per record written, all processes: $(median "${kgo_cpu[@]}") us"
verdict=PASS
for m in $MODES; do
	# shellcheck disable=SC2086 # the lists are words
	med=$(median ${rates[$m]})
	r=$(ratio "$med" "$kgo_med")
	# shellcheck disable=SC2086
	echo "  ${label[$m]}: $med records/s, $r of franz-go alone, CPU per record written, all processes: $(median ${cpus[$m]}) us"
	awk -v r="$r" 'BEGIN{exit !(r >= 0.8)}' || verdict=FAIL
done
[ "$lost_total" -eq 0 ] || verdict=FAIL
echo "target (each >= 0.8 of the producer alone, nothing lost): $verdict (records lost or unaccounted: $lost_total)"
