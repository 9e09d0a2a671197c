#!/usr/bin/env bash
# The developer toolchain's checks, with the project venv's tools (nothing is
# downloaded). The tox environments of the same names run one step each;
# tools/test.sh quick and all run every step with --check.
#   tools/house.sh [--check] [STEP ...]     (default: every step, in this order)
#     pep8          flake8 + hacking, shellcheck (tools/pep8.sh)
#     genconfig     etc/cloudlet.conf.sample (oslo-config-generator, etc/cloudlet-config-generator.conf)
#     genpolicy     etc/nova/policy.yaml.sample (oslopolicy-sample-generator, etc/cloudlet-policy-generator.conf)
#     docs          doc/ -> doc/build/html (Sphinx + myst-parser)
#     api-ref       api-ref/source/parameters.yaml (tools/api_ref_params.py), then
#                   api-ref/source -> api-ref/build/html (os-api-ref)
#     releasenotes  releasenotes/source -> releasenotes/build/html (reno: notes committed to git)
# Without --check, genconfig, genpolicy and api-ref rewrite their generated
# files; with --check they write nothing and fail if a committed file differs.
# Sphinx builds run with -W --keep-going (a warning fails). Every step runs;
# the exit status is 1 if any failed.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}
STEPS=(pep8 genconfig genpolicy docs api-ref releasenotes)
cd "$here" || exit 1
# The generators import this checkout (the venv's install is not editable);
# nova's modules would switch the process to eventlet without the second one.
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export OS_NOVA_DISABLE_EVENTLET_PATCHING=1

check=0
if [ "${1:-}" = --check ]; then
  check=1
  shift
fi
(($#)) || set -- "${STEPS[@]}"
for step in "$@"; do
  case " ${STEPS[*]} " in
    *" $step "*) ;;
    *) echo "usage: $0 [--check] [${STEPS[*]}]" >&2; exit 2 ;;
  esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# sample GENERATOR CONFIG FILE: write FILE, or with --check compare it.
sample() {
  local generator=$1 config=$2 file=$3
  if ((check)); then
    "$VENV/bin/$generator" --config-file "$config" --output-file "$tmp/sample" || return 1
    diff -u "$file" "$tmp/sample" || { echo "$file is out of date: tox -e ${step}" >&2; return 1; }
  else
    "$VENV/bin/$generator" --config-file "$config" --output-file "$file"
  fi
}

# sphinx SOURCE BUILD
sphinx() {
  "$VENV/bin/sphinx-build" -W --keep-going -E -q -b html -d "$2/doctrees" "$1" "$2/html"
}

run_step() {
  case "$1" in
    pep8)      "$here/tools/pep8.sh" ;;
    genconfig) sample oslo-config-generator etc/cloudlet-config-generator.conf etc/cloudlet.conf.sample ;;
    genpolicy) sample oslopolicy-sample-generator etc/cloudlet-policy-generator.conf etc/nova/policy.yaml.sample ;;
    docs)      sphinx doc doc/build ;;
    api-ref)
      if ((check)); then
        "$VENV/bin/python" -W ignore tools/api_ref_params.py --check || return 1
      else
        "$VENV/bin/python" -W ignore tools/api_ref_params.py || return 1
      fi
      sphinx api-ref/source api-ref/build ;;
    releasenotes) sphinx releasenotes/source releasenotes/build ;;
  esac
}

failed=()
for step in "$@"; do
  start=$SECONDS
  if run_step "$step"; then
    echo "[house] $step: ok ($((SECONDS - start)) s)"
  else
    echo "[house] $step: FAILED ($((SECONDS - start)) s)"
    failed+=("$step")
  fi
done
if ((${#failed[@]})); then
  echo "[house] failed: ${failed[*]}" >&2
  exit 1
fi
