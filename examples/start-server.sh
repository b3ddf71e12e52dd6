# Sourced by the run-*.sh examples: bundles and starts the real server on a free port
# (embedded database in a temporary folder, API keys required) and sets $dir, $port,
# $key (the operator key); stops the server and removes the folder on exit.
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
