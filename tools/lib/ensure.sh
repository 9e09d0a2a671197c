# Shared by tools/setup.sh, tools/box.sh and tools/test.sh (source it): install what is
# missing, and only that, so a second run only checks.

# ensure_debian_packages LABEL PACKAGE...: apt-get install the ones not installed.
ensure_debian_packages() {
  local label=$1 missing=() pkg
  shift
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "[$label] installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "[$label] Debian packages present"
  fi
}

# ensure_requirements LABEL VENV STAMP FILE...: pip install -r each FILE into
# VENV unless STAMP records the digest of exactly these files.
ensure_requirements() {
  local label=$1 venv=$2 stamp=$3 digest file args=()
  shift 3
  for file in "$@"; do args+=(-r "$file"); done
  digest=$(cat "$@" | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
    echo "[$label] installing Python requirements (first time: about 2 minutes)"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q "${args[@]}"
    mkdir -p "$(dirname "$stamp")"
    echo "$digest" > "$stamp"
  else
    echo "[$label] Python requirements present ($venv)"
  fi
}

# ensure_box_requirements CHECKOUT VENV STAMP_DIR: the box's services (keystone, glance,
# neutron, barbican...: tools/cloudlet_box/requirements.txt) with the project's own; the
# box's unit tests read the files those packages install, as its bring-up does.
ensure_box_requirements() {
  ensure_requirements box "$2" "$3/box-requirements.stamp" \
    "$1/requirements.txt" "$1/tools/cloudlet_box/requirements.txt"
}
