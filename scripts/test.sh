#!/usr/bin/env bash
# Every test of the project: installs ZooKeeper when it is missing, vets,
# runs the tests with the race detector, a bounded fuzz run of each parser
# of outside input, and the end-to-end test of the three binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
go vet ./...
# Up to 6 test binaries at once: most tests wait (for timeouts, sessions,
# retries) and leave the 2 cores of a small CI machine half idle. The
# ktransfer and kproxy packages, the longest (13 and 12 min alone under the
# race detector), each run as two processes beside the others, their tests
# dealt to them in turn.
# -timeout: a package over it fails with every test it ran.
long=(./ktransfer ./kproxy)
declare -A tests
for pkg in "${long[@]}"; do
	list=$(go test -list '^(Test|Fuzz)' "$pkg") # its failure stops the script (set -e)
	tests[$pkg]=$(grep -E '^(Test|Fuzz)' <<<"$list" || true) # Fuzz: their seed corpora
	if [ -z "${tests[$pkg]}" ]; then
		echo "no test of $pkg listed"
		exit 1
	fi
done
shard() { # shard PKG N: every other test of PKG, from the Nth
	local all names=() i
	mapfile -t all <<<"${tests[$1]}"
	for (( i = $2; i < ${#all[@]}; i += 2 )); do names+=("${all[i]}"); done
	local IFS='|'
	go test -race -count=1 -timeout 45m -run "^(${names[*]})\$" "$1"
}
# Each in a process group of its own (set -m), stopped whole with the
# script: Ctrl-C or a kill left them running (a background command ignores
# SIGINT, and go test's test binaries outlive it), ZooKeeper JVMs and all.
pids=()
stop_tests() {
	for pid in "${pids[@]}"; do kill -- -"$pid" 2>/dev/null || true; done
}
trap stop_tests EXIT
trap 'exit 130' INT TERM
module=github.com/kafka-http-wrapper/kafka-http-wrapper
others=$(go list ./... | grep -vx -e "$module/ktransfer" -e "$module/kproxy")
set -m
go test -race -count=1 -p 2 -timeout 45m $others & pids+=($!)
for pkg in "${long[@]}"; do
	shard "$pkg" 0 & pids+=($!)
	shard "$pkg" 1 & pids+=($!)
done
set +m
failed=0
for pid in "${pids[@]}"; do
	wait "$pid" || failed=1
done
pids=()
trap - EXIT INT TERM
if (( failed )); then
	echo "tests failed"
	exit 1
fi
# Each fuzz target runs for a number of inputs (about 5-10 s each here):
# a count, unlike a duration, does not meet the Go 1.26 fuzzing
# coordinator's race at the end of -fuzztime (golang/go#75804), which
# fails a run with "context deadline exceeded" and no crashing input.
# FUZZTIME=10m (or 5000000x) makes every target run that long instead.
fuzz() { go test -run '^$' -fuzz "^$1\$" -fuzztime "${FUZZTIME:-$3}" "$2"; }
fuzz FuzzValid ./lib/msgpackscan 300000x
fuzz FuzzMapString ./lib/msgpackscan 300000x
fuzz FuzzArray ./lib/msgpackscan 300000x
fuzz FuzzValid ./lib/jsonscan 200000x
fuzz FuzzParseMsgpackBatch ./kproxy 50000x
fuzz FuzzParseJSONBatch ./kproxy 50000x
fuzz FuzzReadRequest ./kproxy 100000x
fuzz FuzzParseOffset ./lib/zklayout 300000x
fuzz FuzzTemplate ./ktransfer 50000x
fuzz FuzzMethodOf ./ktransfer 100000x
fuzz FuzzConfigLoaders ./conf 30000x
fuzz FuzzOpen ./lib/spool 3000x
# The three binaries together, as processes, with faults (about 20 s).
scripts/e2e.sh
echo "all tests passed"
