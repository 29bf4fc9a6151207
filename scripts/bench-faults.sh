#!/usr/bin/env bash
# What broker faults cost kproxy: scripts/faultbench starts a 3-broker kfake
# cluster in-process and kproxy as a process against it; per acks level (1,
# -1, 0) a closed-loop load of 16 HTTP connections with a unique id in every
# body runs CLEAN seconds clean, FAULTS seconds under faults (every second a
# leader shuffle and one broker's produce connection closed on its next
# request), CLEAN seconds clean again. It prints refusals by status,
# duplicates and lost records (Kafka read back), and the time from the end of
# the faults until the rate of 200s is back at 90% of the clean rate.
# Bounded: about 2 × CLEAN + FAULTS seconds per acks level, 70 s by default.
#
#   scripts/bench-faults.sh            CLEAN=5 FAULTS=10 by default; extra arguments go to faultbench
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
KPROXY_BIN_SET=${KPROXY_BIN:-}
KPROXY_BIN=${KPROXY_BIN:-bin/kproxy_bin} # another build to compare (then kproxy is not built)
CLEAN=${CLEAN:-5}
FAULTS=${FAULTS:-10}
[ -n "${KPROXY_BIN_SET:-}" ] || go build -o bin/ ./kproxy/kproxy_bin
go build -o bin/ ./scripts/faultbench
bin/faultbench -kproxy "$KPROXY_BIN" -clean "${CLEAN}s" -faults "${FAULTS}s" "$@"
