#!/usr/bin/env bash
# Install camclassd as a systemd service on a Raspberry Pi (or any Debian-like system).
#
#   sudo scripts/install.sh            # apt packages, venv, models, user, config, unit, start
#   scripts/install.sh --destdir /tmp/root --no-apt --skip-pip   # stage into a directory (tests)
#
# Idempotent: a second run changes nothing that is up to date, and never overwrites an edited
# /etc/camclassd/camclassd.toml (the new default goes next to it as camclassd.toml.dist).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DEFAULT_PREFIX=/opt/camclassd
PREFIX=$DEFAULT_PREFIX
DESTDIR=""
PYTHON=python3
DO_APT=1
DO_SYSTEMCTL=1
DO_USER=1
DO_PIP=1
PIP_ARGS=()
SERVICE_USER=camclassd
# The unit's SupplementaryGroups=. Not 'render' (/dev/dri): the unit's DevicePolicy does not
# allow it anyway (docs/systemd.md).
SERVICE_GROUPS=(video)

usage() {
  cat <<EOF
usage: $0 [options]
  --prefix DIR       install the venv and models under DIR (default $PREFIX)
  --destdir DIR      stage every file under DIR (implies --no-apt --no-user --no-systemctl)
  --python PATH      Python used to create the venv (default python3; on Raspberry Pi OS keep
                     the system python3, whose python3-picamera2 the venv sees)
  --no-apt           do not install system packages
  --no-user          do not create the system user '$SERVICE_USER'
  --no-systemctl     do not run systemctl (daemon-reload, enable --now)
  --skip-pip         create the venv but do not pip install the package (tests)
  --pip-arg ARG      extra argument for pip install (repeatable, e.g. --pip-arg --no-deps)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --destdir) DESTDIR=${2:?--destdir needs a directory}; shift 2 ;;
    --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
    --no-apt) DO_APT=0; shift ;;
    --no-user) DO_USER=0; shift ;;
    --no-systemctl) DO_SYSTEMCTL=0; shift ;;
    --skip-pip) DO_PIP=0; shift ;;
    --pip-arg) PIP_ARGS+=("${2:?--pip-arg needs a value}"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install: unknown option $1" >&2; usage >&2; exit 64 ;;
  esac
done

case "$PREFIX" in
  /*) ;;
  *) echo "install: --prefix must be an absolute path" >&2; exit 64 ;;
esac
PREFIX=${PREFIX%/}
if [ -n "$DESTDIR" ]; then
  DESTDIR=$(mkdir -p "$DESTDIR" && cd "$DESTDIR" && pwd)
  # A staged tree has no users, no apt and no running systemd to talk to.
  DO_APT=0; DO_USER=0; DO_SYSTEMCTL=0
elif [ "$(id -u)" -ne 0 ]; then
  echo "install: run as root (sudo $0), or stage with --destdir DIR" >&2
  exit 77
fi

say() { echo "install: $*"; }
ROOT=$DESTDIR
VENV=$ROOT$PREFIX/venv
ETC=$ROOT/etc/camclassd
UNIT_DIR=$ROOT/etc/systemd/system
SHARE=$ROOT$PREFIX/share

# Copy SRC to DEST with MODE unless DEST already has the same bytes; says what changed.
put() {
  local mode=$1 src=$2 dest=$3
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    return 1
  fi
  install -D -m "$mode" "$src" "$dest"
  say "wrote $dest"
}

# --- 1. system packages --------------------------------------------------------------------
if [ "$DO_APT" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  packages=(python3-venv python3-pip python3-systemd mosquitto-clients)
  # Only Raspberry Pi OS has it; elsewhere picamera2 cannot work anyway (it needs the Pi's
  # libcamera), and USB/RTSP cameras go through OpenCV.
  if apt-cache show python3-picamera2 >/dev/null 2>&1; then
    packages+=(python3-picamera2)
  fi
  say "apt packages: ${packages[*]}"
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# --- 2. the venv and the package -----------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV (--system-site-packages: apt's picamera2 and systemd stay visible)"
  if [ "$DO_PIP" = 1 ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv --system-site-packages --without-pip "$VENV"
  fi
fi
if [ "$DO_PIP" = 1 ]; then
  "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$VENV/bin/python" -m ensurepip -q
  constraints=()
  # picamera2's compiled helpers are built against the system numpy: a numpy 2 from PyPI in
  # the venv would shadow it and break them, so keep the system's version when there is one.
  # Ask the system Python, not the venv's: on a second run the venv sees the numpy that the
  # first run installed into it, and would take that for the system's.
  system_numpy=$("$PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
  if [ -n "$system_numpy" ]; then
    constraint_file=$(mktemp)
    trap 'rm -f "$constraint_file"' EXIT
    echo "numpy==$system_numpy" >"$constraint_file"
    constraints=(--constraint "$constraint_file")
    say "keeping the system numpy $system_numpy"
  fi
  say "pip install $REPO into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-warn-script-location \
    "${constraints[@]}" ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "$REPO"
else
  say "skipping pip install (--skip-pip)"
fi

# --- 3. models and documentation -------------------------------------------------------------
for model in "$REPO"/models/*.tflite "$REPO"/models/*labels*.txt; do
  [ -f "$model" ] || continue
  put 0644 "$model" "$ROOT$PREFIX/models/$(basename "$model")" || true
done
for doc in configuration.md systemd.md; do
  if [ -f "$REPO/docs/$doc" ]; then
    put 0644 "$REPO/docs/$doc" "$ROOT$PREFIX/docs/$doc" || true
  fi
done
for example in "$REPO"/config/examples/*.toml; do
  put 0644 "$example" "$SHARE/examples/$(basename "$example")" || true
done

# --- 4. the system user ------------------------------------------------------------------------
if [ "$DO_USER" = 1 ]; then
  if ! getent passwd "$SERVICE_USER" >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /var/lib/camclassd \
      --shell /usr/sbin/nologin --comment "camclassd camera classifier" "$SERVICE_USER"
    say "created system user $SERVICE_USER"
  fi
  # Camera devices (/dev/video*, /dev/media*, /dev/dma_heap/*) belong to 'video'.
  for group in "${SERVICE_GROUPS[@]}"; do
    if getent group "$group" >/dev/null && ! id -nG "$SERVICE_USER" | grep -qw "$group"; then
      usermod -a -G "$group" "$SERVICE_USER"
      say "added $SERVICE_USER to group $group"
    fi
  done
fi

# --- 5. the configuration (never overwriting an edited one) ------------------------------------
install -d -m 0755 "$ETC"
# The MQTT password goes in $ETC/mqtt/password; the unit loads the directory as a credential.
install -d -m 0700 "$ETC/mqtt"
default=$REPO/config/camclassd.toml
if [ "$PREFIX" != "$DEFAULT_PREFIX" ]; then
  # The shipped default points [model] path and labels at $DEFAULT_PREFIX/models: with
  # another prefix the models are elsewhere, so the default installed (a fresh config, or the
  # .dist next to an edited one, which is never touched) points at $PREFIX/models instead.
  default_tmp=$(mktemp)
  sed "s|\"$DEFAULT_PREFIX/models/|\"$PREFIX/models/|" "$REPO/config/camclassd.toml" >"$default_tmp"
  default=$default_tmp
fi
config=$ETC/camclassd.toml
installed_default=$SHARE/camclassd.toml.default  # the default as this script last installed it
# The file may hold an RTSP URL with a camera password: readable by the service, not by all.
write_config() {
  if [ -z "$DESTDIR" ] && getent group "$SERVICE_USER" >/dev/null; then
    install -m 0640 -g "$SERVICE_USER" "$default" "$config"
  else
    install -m 0644 "$default" "$config"
  fi
}
if [ ! -e "$config" ]; then
  write_config
  say "wrote $config"
elif cmp -s "$config" "$default"; then
  rm -f "$config.dist"  # up to date: a leftover .dist would only confuse
elif [ -f "$installed_default" ] && cmp -s "$config" "$installed_default"; then
  write_config  # never edited: follow the new default
  say "updated the unedited $config to the new default"
else
  if put 0644 "$default" "$config.dist"; then
    say "kept your edited $config; the new default is $config.dist"
  fi
fi
put 0644 "$default" "$installed_default" || true
if [ -n "${default_tmp:-}" ]; then
  rm -f "$default_tmp"
fi

# --- 6. the unit -------------------------------------------------------------------------------
unit_tmp=$(mktemp)
sed "s|/opt/camclassd|$PREFIX|g" "$REPO/systemd/camclassd.service" >"$unit_tmp"
unit_changed=0
if put 0644 "$unit_tmp" "$UNIT_DIR/camclassd.service"; then
  unit_changed=1
fi
rm -f "$unit_tmp"

# --- 7. start ------------------------------------------------------------------------------------
if [ "$DO_SYSTEMCTL" = 1 ]; then
  was_active=$(systemctl is-active camclassd 2>/dev/null || true)
  systemctl daemon-reload
  systemctl enable --now camclassd
  if [ "$was_active" = active ]; then
    systemctl restart camclassd  # pick up the new code, models and unit
  fi
  say "camclassd is $(systemctl is-active camclassd || true); logs: journalctl -u camclassd -f"
else
  if [ "$unit_changed" = 1 ]; then
    say "skipping systemctl: run 'systemctl daemon-reload && systemctl enable --now camclassd'"
  fi
fi
# The command printed is one that exists: with --destdir that is the staged copy.
if [ -x "$VENV/bin/camclassd" ]; then
  say "done. Edit $config (check it: $VENV/bin/camclassd check-config $config)"
else
  say "done. Edit $config (no camclassd command was installed: --skip-pip)"
fi
