#!/usr/bin/env bash
# Every test of the project: installs ZooKeeper when it is missing, vets,
# runs the tests with the race detector, a bounded fuzz run of each parser
# of outside input (FUZZTIME each, 10s by default), and the end-to-end test of the three binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
go vet ./...
go test -race -count=1 -timeout 20m ./...
FUZZTIME=${FUZZTIME:-10s}
go test -run '^$' -fuzz '^FuzzValid$' -fuzztime "$FUZZTIME" ./lib/msgpackscan
go test -run '^$' -fuzz '^FuzzMapString$' -fuzztime "$FUZZTIME" ./lib/msgpackscan
go test -run '^$' -fuzz '^FuzzParseOffset$' -fuzztime "$FUZZTIME" ./lib/zklayout
go test -run '^$' -fuzz '^FuzzTemplate$' -fuzztime "$FUZZTIME" ./ktransfer
go test -run '^$' -fuzz '^FuzzMethodOf$' -fuzztime "$FUZZTIME" ./ktransfer
go test -run '^$' -fuzz '^FuzzConfigLoaders$' -fuzztime "$FUZZTIME" ./conf
# The three binaries together, as processes, with faults (about 20 s).
scripts/e2e.sh
echo "all tests passed"
