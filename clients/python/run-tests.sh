#!/usr/bin/env bash
# CI for the Python package (clients/python): the committed stubs are what buf generates from
# proto/; `pip install ./clients/python` into a virtualenv on Debian's python3-grpcio,
# python3-protobuf and python3-django (no other package index); the tests against the real
# server (tests/test_against_server.py starts, SIGKILLs and restarts it).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! /usr/bin/python3 -c 'import grpc, google.protobuf, django, venv' 2>/dev/null || ! command -v grpc_python_plugin >/dev/null || ! command -v protoc >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-grpcio python3-protobuf python3-django python3-venv protobuf-compiler protobuf-compiler-grpc >/dev/null
fi
npx buf generate --template clients/python/buf.gen.yaml --exclude-path proto/grpc
generated="clients/python/metering/v1 clients/python/google"
git diff --exit-code --stat -- $generated || { echo "clients/python: the stubs differ from what buf generates from proto/ (commit them)"; exit 1; }
test -z "$(git ls-files --others --exclude-standard -- $generated)" || { echo "clients/python: generated stubs not committed: $(git ls-files --others --exclude-standard -- $generated)"; exit 1; }
node tools/scripts/build.mjs
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
/usr/bin/python3 -m venv --system-site-packages "$venv"
# --no-build-isolation: build with Debian's setuptools instead of fetching one.
"$venv/bin/pip" install --quiet --no-build-isolation --no-index ./clients/python
cd "$venv"  # import the installed package, not the source folder
CI="${CI:-}" "$venv/bin/python" "$OLDPWD/clients/python/tests/test_against_server.py" -v 2>&1
