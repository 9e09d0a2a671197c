#!/usr/bin/env bash
# Set up this machine for openstack-cloudlet (Debian 12, root): Debian packages,
# a virtualenv with the pinned Python packages and this project, libvirtd and
# virtlogd started (there is no systemd), and the test guest built.
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}
STAMP_DIR=${CLOUDLET_CACHE:-/var/cache/openstack-cloudlet}
log() { printf '[setup] %s\n' "$*"; }
# shellcheck source=tools/lib/ensure.sh
. "$here/tools/lib/ensure.sh"

APT_PACKAGES=(
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu
  libvirt-dev pkg-config gcc python3-venv python3-dev
  xdelta3 zstd xz-utils busybox-static kmod e2fsprogs iproute2 curl
  shellcheck
  # the dashboard's browser tests (tests/e2e/test_dashboard.py): headless, through Selenium
  chromium chromium-driver
)

ensure_debian_packages setup "${APT_PACKAGES[@]}"

mkdir -p "$STAMP_DIR"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
ensure_requirements setup "$VENV" "$STAMP_DIR/requirements.stamp" \
  "$here/requirements.txt" "$here/test-requirements.txt"
# The project itself, from this checkout (not editable: nova loads a shim
# package from site-packages, which editable installs do not provide).
(cd "$here" && PBR_VERSION=${PBR_VERSION:-0.1.0} "$VENV/bin/pip" install -q --no-deps --force-reinstall .)
log "installed openstack-cloudlet into $VENV"

"$here/tools/libvirtd.sh" start
"$here/tools/build-guest.sh"
log "done"
