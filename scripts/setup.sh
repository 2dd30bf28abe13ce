#!/usr/bin/env bash
# Set up a development checkout: system packages (when missing) and a venv at .venv with the
# package and its dev tools. Idempotent and quiet when everything is already there.
# Used by scripts/demo.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
pkg-config --exists libsystemd 2>/dev/null || need_apt+=(libsystemd-dev)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)  # the install scripts' test
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need_apt[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # Debian's mosquitto package starts a system broker; the tests and the demo use their own.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $("$PYTHON" --version)" >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# Re-install only when pyproject.toml changed since the last install.
stamp="$VENV/.camclassd-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing camclassd and its dev tools into $VENV" >&2
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
