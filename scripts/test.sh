#!/usr/bin/env bash
# Every test of the project: installs ZooKeeper when it is missing, vets,
# runs the tests with the race detector, a bounded fuzz run of each parser
# of outside input, and the end-to-end test of the three binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
go vet ./...
# Most tests wait (for timeouts, sessions, retries) and leave the 2 cores
# of a small CI machine half idle, so test binaries run side by side: the
# packages up to 3 at once, and the two whose tests run longest in one
# process (ktransfer, kproxy: about 10 min each, one test after another)
# split in SHARDS processes each, every SHARDS-th test in each. Each
# process has its own ZooKeeper servers, brokers and ports, as every test.
# -timeout: a package (or part) over it fails with every test it ran.
SHARDS=${SHARDS:-2}
long=(ktransfer kproxy)
module=$(go list -m)
mapfile -t rest < <(go list ./... | grep -v -x $(printf -- "-e $module/%s " "${long[@]}"))
# The long packages' tests, fuzz targets (their seeds) and examples, by name.
declare -A listed=()
for pkg in "${long[@]}"; do
	listed[$pkg]=$(go test -race -list . "./$pkg" | grep -E '^(Test|Fuzz|Example)')
	[ -n "${listed[$pkg]}" ] || { echo "no tests listed in ./$pkg" >&2; exit 1; }
done
test_pids=()
go test -race -count=1 -p 3 -timeout 45m "${rest[@]}" &
test_pids+=($!)
for pkg in "${long[@]}"; do
	for i in $(seq 0 $((SHARDS - 1))); do
		part=$(awk -v n="$SHARDS" -v i="$i" '(NR - 1) % n == i' <<<"${listed[$pkg]}" | paste -sd'|')
		[ -n "$part" ] || continue
		go test -race -count=1 -timeout 45m -run "^($part)\$" "./$pkg" &
		test_pids+=($!)
	done
done
failed=0
for p in "${test_pids[@]}"; do wait "$p" || failed=1; done
[ "$failed" -eq 0 ] || { echo "tests failed" >&2; exit 1; }
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
