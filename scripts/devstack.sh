#!/usr/bin/env bash
# The development stack: ZooKeeper on 127.0.0.1:2181 and a kfake Kafka broker
# on 127.0.0.1:9092, registered under /mq/test_cluster (the chroot of conf/).
# Ctrl-C stops both. Flags go to the devstack program (-h lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
go build -o bin/ ./scripts/devstack
exec bin/devstack "$@"
