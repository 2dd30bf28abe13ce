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
# CAMCLASSD_HA_ROOT: a root file system with a newer python3 (e.g. Debian trixie made with
# `debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates trixie DIR`)
# to run a current release in, chrooted (root only); the checker still runs with the pinned
# venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

pinned=2025.4.4
version=${CAMCLASSD_HA_VERSION:-$pinned}
host_python=${CAMCLASSD_HA_PYTHON:-/root/.pyenv/versions/3.13.0/bin/python}
cache=${CAMCLASSD_HA_CACHE:-/var/cache/camclassd-ha}
root=${CAMCLASSD_HA_ROOT:-}
# The integrations HA loads in the test (their dependencies follow); HA always loads frontend
# and goes into recovery mode without it.
integrations=(frontend http api websocket_api auth onboarding config mqtt sensor binary_sensor image
    event button switch)

if [ ! -x "$host_python" ]; then
    echo "test-homeassistant: $host_python not found: Home Assistant $pinned needs Python 3.13;" \
        "set CAMCLASSD_HA_PYTHON=/path/to/python3.13" >&2
    exit 69
fi

# run_in ROOT COMMAND...: COMMAND on this machine (ROOT empty) or chrooted into ROOT.
run_in() {
    local r=$1
    shift
    if [ -n "$r" ]; then chroot "$r" env -u PIP_FIND_LINKS "$@"; else "$@"; fi
}

mounted=()
variants=""
# shellcheck disable=SC2317  # only called by the EXIT trap
cleanup() {
    local fs
    for fs in "${mounted[@]}"; do umount "$fs" || true; done
    if [ -n "$variants" ]; then rm -f "$variants"; fi
}
trap cleanup EXIT

if [ -n "$root" ]; then
    if [ ! -x "$root/usr/bin/python3" ]; then
        echo "test-homeassistant: CAMCLASSD_HA_ROOT=$root has no usr/bin/python3" >&2
        exit 66
    fi
    # What HA and pip need inside: /proc, /dev, /sys, name resolution, this machine's CAs.
    # Unmounted on exit (cleanup): a bind-mounted /dev left in a cache directory is one
    # `rm -rf` away from deleting the real one.
    for fs in proc dev sys; do
        if ! mountpoint -q "$root/$fs"; then
            mount --bind "/$fs" "$root/$fs"
            mounted+=("$root/$fs")
        fi
    done
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi

# install VERSION PYTHON PREFIX ROOT: a venv PREFIX/ha-VERSION (a path inside ROOT if set).
install() {
    local v=$1 py=$2 prefix=$3 r=$4 t0 wheel venv
    venv="$prefix/ha-$v"
    if [ "$(cat "$r$venv/.complete" 2>/dev/null)" = "$v ${integrations[*]}" ]; then
        echo "== Home Assistant $v: cached in $r$venv"
        return
    fi
    t0=$(date +%s)
    echo "== installing Home Assistant $v into $r$venv"
    rm -rf "$r$venv"
    mkdir -p "$r$prefix/wheels"
    run_in "$r" "$py" -m venv "$venv"
    run_in "$r" "$venv/bin/python" -m pip install -q --upgrade pip
    run_in "$r" "$venv/bin/python" -m pip download -q --no-deps -d "$prefix/wheels" \
        "homeassistant==$v"
    wheel="$prefix/wheels/homeassistant-$v-py3-none-any.whl"
    run_in "$r" "$venv/bin/python" - "$wheel" "$venv/constraints.txt" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    data = wheel.read("homeassistant/package_constraints.txt")
with open(sys.argv[2], "wb") as out:
    out.write(data)
EOF
    run_in "$r" "$venv/bin/python" -m pip install -q -c "$venv/constraints.txt" "$wheel"
    # The loaded integrations' requirements, dependencies followed (what HA would pip-install
    # at start-up).
    run_in "$r" "$venv/bin/python" - "${integrations[@]}" >"$r$venv/requirements.txt" <<'EOF'
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
    if [ -s "$r$venv/requirements.txt" ]; then
        run_in "$r" "$venv/bin/python" -m pip install -q -c "$venv/constraints.txt" \
            -r "$venv/requirements.txt"
    fi
    echo "$v ${integrations[*]}" >"$r$venv/.complete"
    echo "== Home Assistant $v installed in $(( $(date +%s) - t0 )) s"
}

# The checker's python (aiohttp, paho-mqtt) is always the pinned venv's.
install "$pinned" "$host_python" "$cache" ""
checker="$cache/ha-$pinned/bin/python"
if [ -n "$root" ]; then
    install "$version" /usr/bin/python3 /opt/camclassd-ha "$root"
    hass="chroot $root /opt/camclassd-ha/ha-$version/bin/hass"
    schema_python="chroot $root /opt/camclassd-ha/ha-$version/bin/python"
else
    install "$version" "$host_python" "$cache" ""
    hass="$cache/ha-$version/bin/hass"
    schema_python="$cache/ha-$version/bin/python"
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
.venv/bin/python scripts/ha_variants.py >"$variants"
status=0
"$checker" scripts/ha_check.py --hass "$hass" --root "$root" --schema-python "$schema_python" \
    --camclassd .venv/bin/camclassd --mosquitto "$mosquitto" --variants "$variants" || status=$?
echo "== test-homeassistant (Home Assistant $version) finished in $(( $(date +%s) - start )) s" \
    "(exit $status)"
exit $status
