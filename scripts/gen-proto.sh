#!/usr/bin/env bash
# Regenerates kproxy/kproxypb from proto/kproxy.proto. The generated code is
# committed: building needs no protoc. Needs protoc (Debian: protobuf-compiler).
set -euo pipefail
cd "$(dirname "$0")/.."
GOBIN="$(go env GOPATH)/bin"
go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PATH="$GOBIN:$PATH" protoc -I proto \
	--go_out=. --go_opt=module=github.com/kafka-http-wrapper/kafka-http-wrapper \
	--go-grpc_out=. --go-grpc_opt=module=github.com/kafka-http-wrapper/kafka-http-wrapper \
	proto/kproxy.proto
