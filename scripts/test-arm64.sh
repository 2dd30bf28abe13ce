#!/usr/bin/env bash
# The Raspberry Pi OS install path on arm64, under qemu-user emulation (Pi 4 and Pi 5 cores).
#
#   sudo scripts/test-arm64.sh [RELEASE...]        (default: $CAMCLASSD_ARM64_RELEASES or bookworm)
#
# For each Debian release (bookworm: Python 3.11, trixie: Python 3.13) it builds an arm64 rootfs
# once (mmdebstrap from the archive the host's apt uses) into a cache outside the checkout, then,
# in a throw-away overlay on top of it, installs this checkout the way a Pi user does
# (scripts/install.sh: apt packages, a venv with --system-site-packages, pip install) and runs,
# under QEMU_CPU=cortex-a72 (Pi 4) and cortex-a76 (Pi 5) each:
#   classify --json on samples/*.jpg with both shipped models (top-1 checked), check-config on
#   the shipped configs, the daemon for a few seconds on an images source publishing to a
#   private mosquitto on the host's loopback (messages checked against docs/schemas/), and
#   tests/test_engine.py with pytest (also on tflite-runtime where it has a wheel: Python 3.11).
# Then: `file` and the segment alignment (16K pages, as a Pi 5 kernel uses) of every native
# module installed.
#
# Environment:
#   CAMCLASSD_ARM64_RELEASES  releases when none are given (default: bookworm)
#   CAMCLASSD_ARM64_CPUS      emulated cores (default: "cortex-a72 cortex-a76")
#   CAMCLASSD_ARM64_CACHE     rootfs and pip cache (default: /var/cache/camclassd-arm64)
#   CAMCLASSD_ARM64_MIRROR    Debian archive URL (default: the host's apt sources)
# Exit: 0 passed, or SKIPPED where binfmt_misc cannot be used (printed as such); 1 a step
# failed (its name and the tail of its log are printed); 64 bad arguments; 77 not root.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CAMCLASSD_ARM64_CACHE:-/var/cache/camclassd-arm64}
read -r -a CPUS <<<"${CAMCLASSD_ARM64_CPUS:-cortex-a72 cortex-a76}"
if [ $# -gt 0 ]; then
  RELEASES=("$@")
else
  read -r -a RELEASES <<<"${CAMCLASSD_ARM64_RELEASES:-bookworm}"
fi
# Bump when the way the rootfs is made changes (the package list is hashed in anyway).
RECIPE=1
PREFIX=/opt/camclassd
SRC=/tmp/camclassd-src   # the checkout, inside the rootfs
CA=/etc/camclassd-host-ca.pem   # the host's CA bundle, inside the rootfs

say() { echo "arm64: $*"; }
die() { echo "arm64: error: $*" >&2; exit 1; }
skip() {
  echo "arm64: SKIPPED (not passed): $*" >&2
  echo "arm64: SKIPPED: the arm64 install path was not tested on this machine"
  exit 0
}

for release in "${RELEASES[@]}"; do
  case "$release" in
    bookworm|trixie) ;;
    *) echo "arm64: unknown release '$release' (bookworm or trixie)" >&2; exit 64 ;;
  esac
done
for cpu in "${CPUS[@]}"; do
  case "$cpu" in
    cortex-a72|cortex-a76) ;;
    *) echo "arm64: unknown CPU '$cpu' (cortex-a72 or cortex-a76; never qemu's 'max')" >&2
       exit 64 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "arm64: run as root (chroot, mounts, binfmt_misc): sudo $0" >&2
  exit 77
fi

# --- cleanup: whatever was mounted or started, also on Ctrl-C ---------------------------------
MOUNTS=()   # in mount order; unmounted in reverse
RUN=""      # this run's directory: the overlay, logs of the broker, the PIDs started
ROOT=""
STEP_PID=""
TFLITE_SRC=/tmp/camclassd-src-tflite  # in the rootfs: the tflite-runtime venv's own copy
cleanup() {
  local i pid
  if [ -n "$STEP_PID" ]; then  # steps still running (interrupted)
    # shellcheck disable=SC2086  # one PID per word
    kill $STEP_PID 2>/dev/null || true
  fi
  if [ -n "$RUN" ] && [ -f "$RUN/pids" ]; then  # the broker and subscriber on the host
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$RUN/pids"
  fi
  if [ -n "$ROOT" ]; then  # anything still running inside the rootfs
    for pid in /proc/[0-9]*; do
      [ "$(readlink "$pid/root" 2>/dev/null)" = "$ROOT" ] && kill -9 "${pid#/proc/}" 2>/dev/null
    done
    sleep 0.2
  fi
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
  done
  MOUNTS=()
  if [ -n "$RUN" ]; then
    rm -rf "$RUN"
    RUN=""
  fi
  ROOT=""
}
trap cleanup EXIT
trap 'echo "arm64: interrupted" >&2; exit 130' INT TERM HUP

mnt() {  # mnt TARGET MOUNT-ARGS...: mount and remember it for cleanup
  local target=$1
  shift
  mount "$@" "$target"
  MOUNTS+=("$target")
}
unmnt() {  # unmount the last mount (it must be TARGET)
  local target=$1 last=$((${#MOUNTS[@]} - 1))
  [ "${MOUNTS[last]}" = "$target" ] || die "internal: unmounting $target out of order"
  umount "$target"
  unset "MOUNTS[last]"
}

# --- steps: a name, a log, and on failure the tail of the log ---------------------------------
LOGS=$CACHE/logs
STEP_START=0
step() {  # step NAME CMD...: run CMD with its output in $LOGS/NAME.log
  local name=$1 log
  shift
  log=$LOGS/$name.log
  STEP_START=$(date +%s)
  # A subshell outside any `if`: set -e holds inside the step's functions. In the background
  # with `wait`, so that a signal to this script is handled at once, not when the step ends.
  set +e
  (set -e; "$@") >"$log" 2>&1 </dev/null &
  STEP_PID=$!
  wait "$STEP_PID"
  local rc=$?
  STEP_PID=""
  set -e
  if [ "$rc" -eq 0 ]; then
    say "ok   $name ($(($(date +%s) - STEP_START)) s)"
  else
    echo "arm64: FAILED step '$name' (exit $rc, $(($(date +%s) - STEP_START)) s); last lines of $log:" >&2
    tail -n 40 "$log" | sed 's/^/  | /' >&2
    exit 1
  fi
}

steps_together() {  # steps_together NAME FUNC [NAME FUNC]...: independent steps at once
  # One pip under emulation keeps one host core busy; the other core would wait idle.
  local -a names=() pids=()
  local i rc failed=0
  STEP_START=$(date +%s)
  set +e
  while [ $# -ge 2 ]; do
    (set -e; "$2") >"$LOGS/$1.log" 2>&1 </dev/null &
    names+=("$1")
    pids+=("$!")
    shift 2
  done
  STEP_PID="${pids[*]}"
  for i in "${!pids[@]}"; do
    wait "${pids[i]}"
    rc=$?
    if [ "$rc" -eq 0 ]; then
      say "ok   ${names[i]} ($(($(date +%s) - STEP_START)) s, run alongside: ${names[*]})"
    else
      echo "arm64: FAILED step '${names[i]}' (exit $rc); last lines of $LOGS/${names[i]}.log:" >&2
      tail -n 40 "$LOGS/${names[i]}.log" | sed 's/^/  | /' >&2
      failed=1
    fi
  done
  STEP_PID=""
  set -e
  [ "$failed" -eq 0 ] || exit 1
}

# --- host tools ----------------------------------------------------------------------------------
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v arch-test >/dev/null || need+=(arch-test)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v readelf >/dev/null || need+=(binutils)
command -v file >/dev/null || need+=(file)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
if [ ${#need[@]} -gt 0 ]; then
  say "installing host packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
HOST_PY=$REPO/.venv/bin/python
if ! "$HOST_PY" -c 'import jsonschema' 2>/dev/null; then
  "$REPO/scripts/setup.sh"   # the host-side checks use the dev venv's jsonschema
fi

# --- binfmt_misc: qemu-aarch64 runs arm64 binaries (the F flag: no qemu copy in the rootfs) ----
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/status" ]; then
  # Often in the kernel but not mounted (containers, minimal systems).
  mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null ||
    skip "binfmt_misc cannot be mounted here (a container without the privilege?)"
fi
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
  conf=/usr/lib/binfmt.d/qemu-aarch64.conf   # shipped by qemu-user-static, flags F
  [ -f "$conf" ] || die "$conf is missing (reinstall qemu-user-static)"
  cat "$conf" >"$BINFMT/register" 2>/dev/null ||
    skip "qemu-aarch64 cannot be registered with binfmt_misc"
  say "registered qemu-aarch64 with binfmt_misc"
fi
if ! grep -qx enabled "$BINFMT/status" || ! grep -qx enabled "$BINFMT/qemu-aarch64"; then
  skip "binfmt_misc or its qemu-aarch64 entry is disabled"
fi
QEMU_INTERP=$(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64")
QEMU_FIXED=0
grep -q '^flags:.*F' "$BINFMT/qemu-aarch64" && QEMU_FIXED=1
# mmdebstrap checks a foreign architecture with arch-test.
arch-test arm64 >/dev/null 2>&1 || skip "arch-test: arm64 binaries do not run here"

# --- the Debian archive: the one the host's apt uses ----------------------------------------
host_mirror() {
  python3 - <<'EOF'
import glob, pathlib, re, sys

codename = ""
osid = ""
for line in pathlib.Path("/etc/os-release").read_text().splitlines():
    key, _, value = line.partition("=")
    if key == "VERSION_CODENAME":
        codename = value.strip('"')
    if key == "ID":
        osid = value.strip('"')
if osid != "debian":
    sys.exit(f"the host is {osid or 'unknown'}, not Debian: set CAMCLASSD_ARM64_MIRROR")
found = []  # (uri, suites) of every enabled deb source
for name in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    path = pathlib.Path(name)
    if not path.is_file():
        continue
    for line in path.read_text().splitlines():
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            found.append((line[1], [line[2]]))
for name in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", pathlib.Path(name).read_text()):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            for uri in fields.get("uris", "").split():
                found.append((uri, fields.get("suites", "").split()))
# The main archive is the source of the host's own release (not -security, -updates, or others).
for uri, suites in found:
    if codename in suites:
        print(uri.rstrip("/"))
        sys.exit(0)
sys.exit(f"no apt source for {codename} in /etc/apt: set CAMCLASSD_ARM64_MIRROR")
EOF
}
MIRROR=${CAMCLASSD_ARM64_MIRROR:-$(host_mirror)} || die "cannot tell the Debian archive"

# What install.sh asks apt for, read from it: the cached rootfs has them, so its apt step is
# quick, and a package added there changes the cache key (install.sh still installs it anyway).
read -r -a INSTALL_PACKAGES <<<"$(sed -n 's/^ *packages=(\(.*\))$/\1/p' "$REPO/scripts/install.sh" | head -n 1)"
ROOTFS_PACKAGES=(python3 ca-certificates ${INSTALL_PACKAGES[@]+"${INSTALL_PACKAGES[@]}"})

mkdir -p "$CACHE/pip"
# One run at a time per cache: the rootfs build and the logs are shared.
exec 9>"$CACHE/.lock"
flock -n 9 || die "another scripts/test-arm64.sh is using $CACHE (or set CAMCLASSD_ARM64_CACHE)"
rm -rf "$LOGS"
mkdir -p "$LOGS"
say "cache $CACHE, logs $LOGS, archive from the host's apt sources, cores ${CPUS[*]}"

# --- the rootfs, built once per release and package list ----------------------------------------
build_rootfs() {  # build_rootfs RELEASE DIR
  local release=$1 dir=$2 include
  include=$(IFS=,; echo "${ROOTFS_PACKAGES[*]}")
  rm -rf "$dir"
  mkdir -p "$dir"
  # The apt lists are kept so that install.sh's `apt-get update` only revalidates them.
  mmdebstrap --mode=root --arch=arm64 --variant=minbase --include="$include" \
    --skip=cleanup/apt/lists \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$release" "$dir" "deb $MIRROR $release main"
}

rootfs_for() {  # rootfs_for RELEASE: prints the cached rootfs directory, building it if needed
  local release=$1 key dir
  key=$(printf '%s\n' "recipe $RECIPE" "$release" "${ROOTFS_PACKAGES[@]}" | sha256sum | cut -c1-12)
  dir=$CACHE/rootfs-$release-$key
  if [ ! -f "$dir/.complete" ]; then
    # Another key means another package list: the old rootfs is not needed any more.
    rm -rf "$CACHE/rootfs-$release-"* "$CACHE/build-$release"
    say "building the $release arm64 rootfs (once; cached in $dir)" >&2
    step "rootfs-$release" build_rootfs "$release" "$CACHE/build-$release" >&2
    mv "$CACHE/build-$release" "$dir"
    touch "$dir/.complete"
  fi
  echo "$dir"
}

# --- inside the rootfs -------------------------------------------------------------------------
root_cmd() {  # root_cmd CPU: RCMD=(the command line that runs a program in the rootfs)
  # env -i: none of the host's settings (pip's config, proxies, PYTHON*) leak in; the CA
  # bundle is the host's, which the network here needs. QEMU_CPU is read by qemu itself.
  RCMD=(env -i "PATH=$PREFIX/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    HOME=/root LANG=C.UTF-8 TERM=dumb "QEMU_CPU=$1" "PIP_CERT=$CA" "SSL_CERT_FILE=$CA"
    PIP_CACHE_DIR=/var/cache/camclassd-pip PIP_DISABLE_PIP_VERSION_CHECK=1
    PIP_DEFAULT_TIMEOUT=120 PIP_ROOT_USER_ACTION=ignore
    ${EXTRA_ENV[@]+"${EXTRA_ENV[@]}"} /usr/sbin/chroot "$ROOT")
}
inroot() {  # inroot CPU CMD...: run CMD in the rootfs on the emulated CPU, with a clean env
  root_cmd "$1"
  shift
  "${RCMD[@]}" "$@"
}
EXTRA_ENV=()
RCMD=()

# An ARM /proc/cpuinfo for the emulated core: qemu 7.2 passes the host's x86 one through, and
# LiteRT's CPU detection then finds no ARM core and crashes creating the interpreter.
cpuinfo() {  # cpuinfo CPU
  local part variant revision features model
  case "$1" in
    cortex-a72)  # Raspberry Pi 4 (BCM2711): no AES/SHA/PMULL
      part=0xd08; variant=0x0; revision=3; model="Raspberry Pi 4 Model B Rev 1.5"
      features="fp asimd evtstrm crc32 cpuid" ;;
    cortex-a76)  # Raspberry Pi 5 (BCM2712)
      part=0xd0b; variant=0x4; revision=1; model="Raspberry Pi 5 Model B Rev 1.0"
      features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
  esac
  local n
  for n in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$n" "$features"
    printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$revision"
  done
  printf 'Revision\t: 0\nSerial\t\t: 0000000000000000\nModel\t\t: %s\n' "$model"
}

# The emulated core really is the one asked for (qemu's default 'max' gives wrong results
# silently): hardware capabilities as the kernel (qemu) reports them to the program.
check_core() {  # check_core CPU
  inroot "$1" python3 - "$1" <<'EOF'
import ctypes, sys

getauxval = ctypes.CDLL(None).getauxval
getauxval.restype = ctypes.c_ulong
hwcap, hwcap2 = getauxval(16), getauxval(26)  # AT_HWCAP, AT_HWCAP2
# Bits of the arm64 HWCAP word (Linux's uapi/asm/hwcap.h), up to SVE.
names = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
         "jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve").split()
have = {name for bit, name in enumerate(names) if hwcap >> bit & 1}
print(f"{sys.argv[1]}: HWCAP {' '.join(n for n in names if n in have)}; HWCAP2 {hwcap2:#x}")
assert "sve" not in have, "SVE: this is not a Pi core (qemu's 'max'?)"
assert not hwcap2 >> 23 & 1, "SME: this is not a Pi core (qemu's 'max'?)"
armv82 = sys.argv[1] == "cortex-a76"  # the A72 is ARMv8.0: no atomics, no dot product
assert ("atomics" in have) == armv82 and ("asimddp" in have) == armv82, "not the core asked for"
EOF
}

copy_checkout() {  # the files git knows, as they are in the work tree (CI: a fresh clone)
  mkdir -p "$ROOT$SRC"
  if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$REPO" ls-files -z --cached | (cd "$REPO" && tar --null -T - -cf - --ignore-failed-read) |
      tar -xf - -C "$ROOT$SRC"
  else
    tar -C "$REPO" --exclude='./.venv*' --exclude=./.git -cf - . | tar -xf - -C "$ROOT$SRC"
  fi
}

install_camclassd() {  # the README's way; systemd does not run in a chroot
  inroot "${CPUS[0]}" bash "$SRC/scripts/install.sh" --no-systemctl
  # The test tools are not what a user installs: no byte-compiling (slow under emulation).
  inroot "${CPUS[0]}" "$PREFIX/venv/bin/python" -m pip install -q --no-compile pytest hypothesis
  inroot "${CPUS[0]}" "$PREFIX/venv/bin/python" - <<'EOF'
import importlib.metadata as md, sys
print("Python", sys.version.split()[0])
for name in ("ai-edge-litert", "numpy", "opencv-python-headless", "paho-mqtt", "pydantic",
             "psutil", "systemd-python", "camclassd"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
EOF
}

install_tflite_runtime() {  # the fallback runtime, as scripts/test-tflite-runtime.sh has it
  local venv=/opt/tflite-venv
  inroot "${CPUS[0]}" python3 -m venv "$venv"
  inroot "${CPUS[0]}" "$venv/bin/python" -m pip install -q --no-compile --only-binary=:all: \
    "tflite-runtime>=2.14" "numpy<2" "opencv-python-headless>=4.8,<4.11" \
    "pydantic>=2.6,<3" "psutil>=5.9" "paho-mqtt>=2.0,<3" "pytest>=8" "hypothesis>=6.100"
  inroot "${CPUS[0]}" "$venv/bin/python" -m pip install -q --no-compile --no-deps "$TFLITE_SRC"
  inroot "${CPUS[0]}" "$venv/bin/python" - <<'EOF'
import importlib.metadata as md
for name in ("tflite-runtime", "numpy", "opencv-python-headless"):
    print(name, md.version(name))
EOF
}

classify() {  # classify CPU: both shipped models on the samples, top-1 against the golden set
  local cpu=$1 model out
  for model in efficientnet_lite0_uint8 efficientnet_lite0_float32; do
    out=$RUN/classify-$model.json
    inroot "$cpu" sh -c "camclassd classify --json --model $PREFIX/models/$model.tflite \
      --labels $PREFIX/models/imagenet_labels.txt $SRC/samples/*.jpg" >"$out"
    cat "$out"
    (cd "$REPO" && "$HOST_PY" - "$out" <<'EOF'
import json, pathlib, sys

from tests.conftest import GOLDEN  # the accepted top-1 labels of each sample

results = [json.loads(line) for line in pathlib.Path(sys.argv[1]).read_text().splitlines() if line]
seen = {pathlib.Path(r["image"]).name: r["top"][0]["label"] for r in results}
assert set(seen) == set(GOLDEN), f"images classified: {sorted(seen)}, expected {sorted(GOLDEN)}"
wrong = {name: label for name, label in seen.items() if label not in GOLDEN[name]}
assert not wrong, f"wrong top-1: {wrong}"
print("top-1 right:", ", ".join(f"{n} {l}" for n, l in sorted(seen.items())))
EOF
    )
  done
}

check_configs() {  # check_config CPU: every shipped config is valid inside
  local cpu=$1 cfg out
  # rtsp-camera.toml reads its MQTT password from this file (config/examples/rtsp-camera.toml).
  install -D -m 0600 /dev/null "$ROOT/etc/camclassd/mqtt_password"
  echo arm64-test >"$ROOT/etc/camclassd/mqtt_password"
  for cfg in "$ROOT$SRC"/config/*.toml "$ROOT$SRC"/config/examples/*.toml; do
    cfg=${cfg#"$ROOT"}
    out=$(inroot "$cpu" camclassd check-config "$cfg") || { echo "$out"; echo "check-config $cfg failed"; return 1; }
    echo "== $cfg"
    echo "$out"
    if grep -q "not found here" <<<"$out"; then
      echo "check-config $cfg: the installed models were not found"
      return 1
    fi
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run_daemon() {  # run_daemon CPU: a few seconds on the samples, messages against the schemas
  local cpu=$1 port broker sub daemon deadline rc=0 messages=$RUN/messages-$1.txt
  port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$RUN/mosquitto.conf"
  "$MOSQUITTO" -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1 &
  broker=$!
  echo "$broker" >>"$RUN/pids"
  for _ in $(seq 50); do
    mosquitto_sub -h 127.0.0.1 -p "$port" -t probe -W 1 -E 2>/dev/null && break
    sleep 0.2
  done
  mosquitto_sub -h 127.0.0.1 -p "$port" -v -t 'camclassd/#' -t 'homeassistant/#' >"$messages" &
  sub=$!
  echo "$sub" >>"$RUN/pids"
  cat >"$ROOT/tmp/arm64-daemon.toml" <<EOF
[device]
id = "arm64"

[cameras.samples]
type = "images"
path = "$SRC/samples/*.jpg"
fps = 2.0
loop = true

[model]
path = "$PREFIX/models/efficientnet_lite0_uint8.tflite"
labels = "$PREFIX/models/imagenet_labels.txt"
num_threads = 2

[pipeline]
publish = "every"
stable_frames = 1

[mqtt]
host = "127.0.0.1"
port = $port

[metrics]
interval_s = 2.0
EOF
  sleep 0.5
  root_cmd "$cpu"
  "${RCMD[@]}" camclassd run --config /tmp/arm64-daemon.toml &   # $! is the daemon itself
  daemon=$!
  # Start-up under emulation takes a while; stop once a round of the samples and a metrics
  # message have arrived.
  deadline=$(($(date +%s) + 120))
  while [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$daemon" 2>/dev/null; do
    if [ "$(grep -c '/classification ' "$messages")" -ge 5 ] && grep -q '/metrics ' "$messages"; then
      break
    fi
    sleep 0.5
  done
  kill -TERM "$daemon" 2>/dev/null || true
  wait "$daemon" || rc=$?
  sleep 0.5
  kill "$sub" "$broker" 2>/dev/null || true
  wait "$sub" "$broker" 2>/dev/null || true
  echo "daemon exit status $rc; $(wc -l <"$messages") messages"
  [ "$rc" -eq 0 ] || { echo "the daemon did not stop cleanly on SIGTERM"; return 1; }
  (cd "$REPO" && "$HOST_PY" - "$messages" <<'EOF'
import json, pathlib, sys

import jsonschema

from tests.conftest import GOLDEN

schemas = {
    path.name.removesuffix(".schema.json"): json.loads(path.read_text())
    for path in pathlib.Path("docs/schemas").glob("*.schema.json")
}
counts: dict[str, int] = {}
labels = set().union(*GOLDEN.values())
availability = []
for line in pathlib.Path(sys.argv[1]).read_text().splitlines():
    topic, _, payload = line.partition(" ")
    kind = topic.rsplit("/", 1)[-1]
    if topic.startswith("homeassistant/sensor/") and kind == "config":
        kind = "ha-discovery-sensor"
    counts[kind] = counts.get(kind, 0) + 1
    if kind == "availability":
        availability.append(payload)
        continue
    if kind not in schemas or not payload:
        continue
    message = json.loads(payload)
    schema = schemas[kind]
    jsonschema.validators.validator_for(schema)(schema).validate(message)
    if kind == "classification":
        assert message["top"][0]["label"] in labels, f"unexpected top-1: {message['top'][0]}"
print("messages:", ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
assert counts.get("classification", 0) >= 4, "fewer than 4 classifications arrived"
assert counts.get("metrics", 0) >= 1, "no metrics message arrived"
assert counts.get("status", 0) >= 1, "no status message arrived"
assert availability[:1] == ["online"] and availability[-1:] == ["offline"], availability
print("every message valid against docs/schemas/")
EOF
  )
}

# The engine tests that run the interpreter (golden top-1, batches, quantization, the runtime
# chosen) on the uint8 model: what depends on the CPU. qemu emulates float arithmetic in
# software, so the float32 model's tests take minutes here; its top-1 is checked by the
# classify step instead. The other tests check file and label handling in Python and run in
# the x86 suite, but for the default model paths: installed, they are /opt/camclassd/models.
ENGINE_TESTS=(tests/test_engine.py --durations=3 -k "not float32 and (golden_top1 or attributes or sum_to_one or batch_of_four or single_hwc or rejects_wrong or uint8_input or identity_for_uint8 or quantizes or forced_runtime_is_used or default_model_paths)")
engine_tests() {  # engine_tests CPU VENV RUNTIME
  EXTRA_ENV=(CAMCLASSD_RUNTIME="$3")
  # shellcheck disable=SC2016  # expanded by the shell inside the rootfs
  inroot "$1" sh -c 'cd "$0" && venv=$1 && shift && exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"' \
    "$SRC" "$2" "${ENGINE_TESTS[@]}"
  local rc=$?
  EXTRA_ENV=()
  return $rc
}

native_modules() {  # every native module installed: aarch64, and loadable with 16K pages
  local venv bad=0 so info align a
  for venv in "$PREFIX/venv" /opt/tflite-venv /usr/lib/python3/dist-packages; do
    [ -d "$ROOT$venv" ] || continue
    while IFS= read -r -d '' so; do
      info=$(file -bL "$so")
      case "$info" in
        *"ARM aarch64"*) ;;
        *) echo "NOT aarch64: ${so#"$ROOT"}: $info"; bad=1; continue ;;
      esac
      # A Pi 5 kernel uses 16K pages: every LOAD segment must be aligned to at least 16K.
      align=$(readelf -lW "$so" | awk '$1 == "LOAD" { print $NF }' | sort -u | tr '\n' ' ')
      for a in $align; do
        if [ $((a)) -lt 16384 ]; then
          echo "4K-aligned (will not load with 16K pages, Pi 5): ${so#"$ROOT"} (LOAD align $align)"
          bad=1
        fi
      done
    done < <(find "$ROOT$venv" \( -name '*.so' -o -name '*.so.*' \) -type f -print0)
    echo "$venv: $(find "$ROOT$venv" \( -name '*.so' -o -name '*.so.*' \) -type f | wc -l) native modules, aarch64, LOAD segments aligned >= 16K"
  done
  return $bad
}

# --- one release -------------------------------------------------------------------------------
test_release() {  # test_release RELEASE
  local release=$1 lower cpu python
  local t0
  t0=$(date +%s)
  lower=$(rootfs_for "$release")
  RUN=$(mktemp -d "$CACHE/run.XXXXXX")
  mkdir -p "$RUN/upper" "$RUN/work" "$RUN/root"
  ROOT=$RUN/root
  # A fresh overlay each run: the cached rootfs stays as built, the install starts clean.
  mnt "$ROOT" -t overlay overlay -o "lowerdir=$lower,upperdir=$RUN/upper,workdir=$RUN/work"
  mnt "$ROOT/proc" -t proc proc
  mnt "$ROOT/dev" --bind /dev
  mnt "$ROOT/dev/pts" --bind /dev/pts
  # LiteRT's CPU detection reads /sys/devices/system/cpu/{possible,present}.
  mnt "$ROOT/sys" -o bind,ro /sys
  mkdir -p "$ROOT/var/cache/camclassd-pip"
  mnt "$ROOT/var/cache/camclassd-pip" --bind "$CACHE/pip"
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT$CA"
  if [ "$QEMU_FIXED" = 0 ]; then  # registered without F: the chroot needs its own qemu
    install -D -m 0755 /usr/bin/qemu-aarch64-static "$ROOT$QEMU_INTERP"
  fi
  copy_checkout
  python=$(env -i QEMU_CPU="${CPUS[0]}" /usr/sbin/chroot "$ROOT" python3 -c \
    'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  say "== $release (Python $python), rootfs $lower"

  local tflite=0
  if [ "$python" = 3.11 ]; then  # two venvs of their own: installed side by side
    # A copy of the checkout of its own, made before: pip builds in the source tree.
    cp -a "$ROOT$SRC" "$ROOT$TFLITE_SRC"
    steps_together "$release-install" install_camclassd \
      "$release-install-tflite-runtime" install_tflite_runtime
    tflite=1
  else
    step "$release-install" install_camclassd
    say "tflite-runtime: no aarch64 wheel for Python $python (its last release, 2.14, stops at 3.11): not run"
  fi
  sed -n '/^Python /,$p' "$LOGS/$release-install.log" | sed 's/^/  /'
  if [ "$tflite" = 1 ]; then
    sed 's/^/  /' "$LOGS/$release-install-tflite-runtime.log" | tail -n 3
  fi
  step "$release-native-modules" native_modules
  sed 's/^/  /' "$LOGS/$release-native-modules.log"

  for cpu in "${CPUS[@]}"; do
    cpuinfo "$cpu" >"$RUN/cpuinfo-$cpu"
    mnt "$ROOT/proc/cpuinfo" --bind "$RUN/cpuinfo-$cpu"
    step "$release-$cpu-core" check_core "$cpu"
    sed 's/^/  /' "$LOGS/$release-$cpu-core.log"
    step "$release-$cpu-classify" classify "$cpu"
    grep '^top-1' "$LOGS/$release-$cpu-classify.log" | sed 's/^/  /'
    step "$release-$cpu-check-config" check_configs "$cpu"
    step "$release-$cpu-daemon" run_daemon "$cpu"
    grep '^messages' "$LOGS/$release-$cpu-daemon.log" | sed 's/^/  /'
    step "$release-$cpu-engine-tests" engine_tests "$cpu" "$PREFIX/venv" ai-edge-litert
    tail -n 1 "$LOGS/$release-$cpu-engine-tests.log" | sed 's/^/  /'
    if [ "$tflite" = 1 ]; then
      step "$release-$cpu-engine-tests-tflite-runtime" engine_tests "$cpu" /opt/tflite-venv tflite-runtime
      tail -n 1 "$LOGS/$release-$cpu-engine-tests-tflite-runtime.log" | sed 's/^/  /'
    fi
    unmnt "$ROOT/proc/cpuinfo"
  done
  cleanup
  say "== $release passed in $(($(date +%s) - t0)) s"
}

start=$(date +%s)
for release in "${RELEASES[@]}"; do
  test_release "$release"
done
say "passed: ${RELEASES[*]} on ${CPUS[*]} in $(($(date +%s) - start)) s"
