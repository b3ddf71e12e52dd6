#!/usr/bin/env bash
# Proves the contract from Go: generates the Go package from proto/ with buf (Debian's
# protoc-gen-go and protoc-gen-go-grpc), builds examples/go/backend in GOPATH mode against
# Debian's Go sources (no module proxy is reachable here), starts the real server (embedded
# database, API keys required) and runs the backend against it. Installs Debian's packages if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null || [ ! -x /usr/bin/protoc-gen-go-grpc ] || [ ! -d /usr/share/gocode/src/google.golang.org/grpc ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev \
    golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev >/dev/null
fi
npx buf generate --template examples/go/buf.gen.yaml --exclude-path proto/google --exclude-path proto/grpc
source examples/start-server.sh
GO111MODULE=off GOPATH="$PWD/examples/go/gopath:/usr/share/gocode" GOCACHE="$dir/gocache" go build -o "$dir/backend" ./examples/go/backend
"$dir/backend" -address "127.0.0.1:$port" -operator-key "$key"
