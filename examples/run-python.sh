#!/usr/bin/env bash
# Proves the contract from a second language: generates the Python stubs from proto/ with
# buf (protoc's Python generator and Debian's grpc_python_plugin), starts the real server
# (embedded database in a temporary folder, API keys required), and runs
# examples/python/backend.py against it. Run by CI; installs Debian's packages if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null || ! command -v grpc_python_plugin >/dev/null || ! command -v protoc >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc >/dev/null
fi
npx buf generate --template examples/python/buf.gen.yaml --exclude-path proto/grpc
node tools/scripts/build.mjs
dir=$(mktemp -d)
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
/usr/bin/python3 examples/python/backend.py --address "127.0.0.1:$port" --operator-key "$key"
