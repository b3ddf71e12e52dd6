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
dir=$(mktemp -d)
GO111MODULE=off GOPATH="$PWD/examples/go/gopath:/usr/share/gocode" GOCACHE="$dir/gocache" go build -o "$dir/backend" ./examples/go/backend
node tools/scripts/build.mjs
key=$(node -e "process.stdout.write(require('node:crypto').randomBytes(32).toString('base64url'))")
METERING_DATA_DIR="$dir/data" PORT=0 METERING_AUTH=keys METERING_OPERATOR_KEY="$key" node dist/apps/metering/main.js >"$dir/log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
port=""
for _ in $(seq 1 60); do
  port=$(grep -o '"msg":"listening".*"port":[0-9]*' "$dir/log" | grep -o '[0-9]*$' || true)
  [ -n "$port" ] && break
  sleep 0.5
done
[ -n "$port" ] || { cat "$dir/log"; echo "server did not start"; exit 1; }
"$dir/backend" -address "127.0.0.1:$port" -operator-key "$key"
