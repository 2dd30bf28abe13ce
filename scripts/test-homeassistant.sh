#!/usr/bin/env bash
# Prove the Home Assistant device page against a real Home Assistant core.
#
#   scripts/test-homeassistant.sh            install (cached) HA, then run scripts/ha_check.py
#   scripts/test-homeassistant.sh --install  install only
#
# Home Assistant is installed in its own venv in a cache directory outside the repository
# (CI runs in a fresh clone): $CAMCLASSD_HA_CACHE, default /var/cache/camclassd-ha. A plain
# `pip install homeassistant` backtracks for minutes, so the wheel is installed with the
# package_constraints.txt it carries, and the requirements of the integrations the test loads
# are read from their manifests and installed the same way: HA then runs with --skip-pip and
# never reaches the network.
#
# Environment: CAMCLASSD_HA_VERSION (default 2025.4.4, the newest release that runs on
# Python 3.13.0; later releases need >= 3.13.2), CAMCLASSD_HA_PYTHON (default pyenv's 3.13.0),
# CAMCLASSD_HA_CACHE, MOSQUITTO (default: mosquitto on PATH or /usr/sbin/mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

version=${CAMCLASSD_HA_VERSION:-2025.4.4}
python=${CAMCLASSD_HA_PYTHON:-/root/.pyenv/versions/3.13.0/bin/python}
cache=${CAMCLASSD_HA_CACHE:-/var/cache/camclassd-ha}
venv="$cache/ha-$version"
# The integrations HA loads in the test (their dependencies follow); HA always loads frontend
# and goes into recovery mode without it.
integrations=(frontend http api websocket_api auth onboarding config mqtt sensor binary_sensor image
    event button switch)

if [ ! -x "$python" ]; then
    echo "test-homeassistant: $python not found: Home Assistant $version needs Python 3.13;" \
        "set CAMCLASSD_HA_PYTHON=/path/to/python3.13" >&2
    exit 69
fi

install() {
    local t0 wheel
    t0=$(date +%s)
    echo "== installing Home Assistant $version into $venv"
    rm -rf "$venv"
    mkdir -p "$cache/wheels"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip download -q --no-deps -d "$cache/wheels" "homeassistant==$version"
    wheel="$cache/wheels/homeassistant-$version-py3-none-any.whl"
    "$venv/bin/python" - "$wheel" "$venv/constraints.txt" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    data = wheel.read("homeassistant/package_constraints.txt")
with open(sys.argv[2], "wb") as out:
    out.write(data)
EOF
    "$venv/bin/python" -m pip install -q -c "$venv/constraints.txt" "$wheel"
    # The loaded integrations' requirements, dependencies followed (what HA would pip-install
    # at start-up).
    "$venv/bin/python" - "${integrations[@]}" >"$venv/requirements.txt" <<'EOF'
import json, sys
from pathlib import Path
import homeassistant.components as components
root = Path(components.__path__[0])
todo, seen, reqs = list(sys.argv[1:]), set(), set()
while todo:
    name = todo.pop()
    if name in seen:
        continue
    seen.add(name)
    manifest = json.loads((root / name / "manifest.json").read_text())
    reqs.update(manifest.get("requirements", []))
    todo.extend(manifest.get("dependencies", []))
print("\n".join(sorted(reqs)))
EOF
    if [ -s "$venv/requirements.txt" ]; then
        "$venv/bin/python" -m pip install -q -c "$venv/constraints.txt" -r "$venv/requirements.txt"
    fi
    echo "$version ${integrations[*]}" >"$venv/.complete"
    echo "== Home Assistant $version installed in $(( $(date +%s) - t0 )) s"
}

if [ "$(cat "$venv/.complete" 2>/dev/null)" != "$version ${integrations[*]}" ]; then
    install
else
    echo "== Home Assistant $version: cached in $venv"
fi
if [ "${1:-}" = "--install" ]; then
    exit 0
fi

mosquitto=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
if [ ! -x .venv/bin/camclassd ]; then
    echo "test-homeassistant: .venv/bin/camclassd not found: run scripts/setup.sh first" >&2
    exit 66
fi
variants=$(mktemp)
trap 'rm -f "$variants"' EXIT
.venv/bin/python scripts/ha_variants.py >"$variants"
status=0
"$venv/bin/python" scripts/ha_check.py --hass "$venv/bin/hass" --camclassd .venv/bin/camclassd \
    --mosquitto "$mosquitto" --variants "$variants" || status=$?
echo "== test-homeassistant finished in $(( $(date +%s) - start )) s (exit $status)"
exit $status
