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

APT_PACKAGES=(
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu
  libvirt-dev pkg-config gcc python3-venv python3-dev
  xdelta3 zstd xz-utils busybox-static kmod e2fsprogs iproute2 curl
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

mkdir -p "$STAMP_DIR"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
req_digest=$(cat "$here/requirements.txt" "$here/test-requirements.txt" | sha256sum | cut -c1-16)
if [ "$(cat "$STAMP_DIR/requirements.stamp" 2>/dev/null)" != "$req_digest" ]; then
  log "installing Python requirements (first time: about 2 minutes)"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$here/requirements.txt" -r "$here/test-requirements.txt"
  echo "$req_digest" > "$STAMP_DIR/requirements.stamp"
else
  log "Python requirements present ($VENV)"
fi
# The project itself, from this checkout (not editable: nova loads a shim
# package from site-packages, which editable installs do not provide).
(cd "$here" && PBR_VERSION=${PBR_VERSION:-0.1.0} "$VENV/bin/pip" install -q --no-deps --force-reinstall .)
log "installed openstack-cloudlet into $VENV"

"$here/tools/libvirtd.sh" start
"$here/tools/build-guest.sh"
log "done"
