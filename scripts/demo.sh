#!/usr/bin/env bash
# The main job on the bundled sample media: set up what is missing, start a private mosquitto
# on a free port, run the daemon on config/demo.toml and show what arrives over MQTT.
# Extra arguments go to `camclassd run` (default: --max-frames 12).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

workdir=$(mktemp -d)
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n' "$port" > "$workdir/mosquitto.conf"
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$mosquitto_bin" -c "$workdir/mosquitto.conf" >"$workdir/mosquitto.log" 2>&1 &
broker=$!
subscriber=""
cleanup() {
  [ -n "$subscriber" ] && kill "$subscriber" 2>/dev/null
  kill "$broker" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$workdir"
}
trap cleanup EXIT
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
echo "demo: private broker on 127.0.0.1:$port; showing camclassd/demo/# as it arrives" >&2

mosquitto_sub -h 127.0.0.1 -p "$port" -v -t 'camclassd/demo/#' &
subscriber=$!
[ $# -gt 0 ] || set -- --max-frames 12
.venv/bin/camclassd run --config config/demo.toml --set "mqtt.port=$port" "$@"
sleep 0.5  # let the subscriber print the last messages
