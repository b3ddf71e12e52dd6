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
source examples/start-server.sh
/usr/bin/python3 examples/python/backend.py --address "127.0.0.1:$port" --operator-key "$key"
