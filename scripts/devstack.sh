#!/usr/bin/env bash
# The development stack: ZooKeeper on 127.0.0.1:2181 and a kfake Kafka cluster
# of three brokers on 127.0.0.1:9092, 9093 and 9094, each registered under
# /mq/test_cluster/brokers/ids (the chroot of conf/). Ctrl-C stops it all.
# Flags go to the devstack program (-h lists them; -kafka-port moves the
# three broker ports together).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_pkg /usr/share/java/zookeeper.jar zookeeper
go build -o bin/ ./scripts/devstack
exec bin/devstack "$@"
