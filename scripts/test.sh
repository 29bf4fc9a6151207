#!/usr/bin/env bash
# Every test of the project: installs ZooKeeper when it is missing, vets,
# runs the tests with the race detector, a bounded fuzz run of each parser
# of outside input, and the end-to-end test of the three binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
go vet ./...
# Up to 3 test binaries at once: most tests wait (for timeouts, sessions,
# retries) and leave the 2 cores of a small CI machine half idle.
# -timeout: the ktransfer package takes about 10 min, 18.5 min on a loaded
# machine; a package over the timeout fails with every test it ran.
go test -race -count=1 -p 3 -timeout 45m ./...
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
