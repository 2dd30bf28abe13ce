#!/usr/bin/env bash
# Remove what scripts/install.sh installed: the unit, the venv, the models and docs.
# /etc/camclassd (your config and MQTT password) and /var/lib/camclassd stay unless --purge,
# which also removes the system user.
set -euo pipefail

PREFIX=/opt/camclassd
DESTDIR=""
PURGE=0
DO_SYSTEMCTL=1
SERVICE_USER=camclassd

usage() {
  cat <<USAGE
usage: $0 [--prefix DIR] [--destdir DIR] [--purge] [--no-systemctl]
  --prefix DIR     where install.sh put the venv and models (default $PREFIX)
  --destdir DIR    remove from a staged tree (implies --no-systemctl; the user is left alone)
  --purge          also remove /etc/camclassd, /var/lib/camclassd and the user $SERVICE_USER
  --no-systemctl   do not stop and disable the service
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --destdir) DESTDIR=${2:?--destdir needs a directory}; shift 2 ;;
    --purge) PURGE=1; shift ;;
    --no-systemctl) DO_SYSTEMCTL=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "uninstall: unknown option $1" >&2; usage >&2; exit 64 ;;
  esac
done
PREFIX=${PREFIX%/}
case "$PREFIX" in
  /?*) ;;
  *) echo "uninstall: --prefix must be an absolute path other than /" >&2; exit 64 ;;
esac
if [ -n "$DESTDIR" ]; then
  DESTDIR=$(cd "$DESTDIR" && pwd)
  DO_SYSTEMCTL=0
elif [ "$(id -u)" -ne 0 ]; then
  echo "uninstall: run as root (sudo $0)" >&2
  exit 77
fi

say() { echo "uninstall: $*"; }
ROOT=$DESTDIR
UNIT=$ROOT/etc/systemd/system/camclassd.service

if [ "$DO_SYSTEMCTL" = 1 ] && command -v systemctl >/dev/null; then
  systemctl disable --now camclassd 2>/dev/null || true
fi
if [ -e "$UNIT" ]; then
  rm -f "$UNIT"
  say "removed $UNIT"
  if [ "$DO_SYSTEMCTL" = 1 ]; then
    systemctl daemon-reload || true
  fi
fi
# Only what install.sh creates: never a blanket rm -rf of the prefix.
for item in venv models docs share; do
  target="$ROOT$PREFIX/$item"  # PREFIX was checked above: absolute, not /
  if [ -e "$target" ]; then
    rm -rf -- "${target:?}"
    say "removed $target"
  fi
done
rmdir "$ROOT$PREFIX" 2>/dev/null || true

if [ "$PURGE" = 1 ]; then
  for dir in "$ROOT/etc/camclassd" "$ROOT/var/lib/camclassd"; do
    if [ -e "$dir" ]; then
      rm -rf "$dir"
      say "removed $dir"
    fi
  done
  if [ -z "$DESTDIR" ] && getent passwd "$SERVICE_USER" >/dev/null; then
    userdel "$SERVICE_USER"
    say "removed user $SERVICE_USER"
  fi
else
  if [ -d "$ROOT/etc/camclassd" ]; then
    say "kept $ROOT/etc/camclassd (remove it with --purge)"
  fi
fi
say "done"
