#!/usr/bin/env bash
# Style checks (tox -e pep8; tools/house.sh pep8): flake8 with hacking over the
# Python sources (configuration: [flake8] in tox.ini), shellcheck over the
# shell scripts (the flags of tests/unit/deploy/test_devstack_plugin.py).
# Both run; the exit status is 1 if either found something. Extra arguments
# are flake8 options (e.g. --statistics).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}
cd "$here" || exit 1

py=(cloudlet_engine cloudlet_glance cloudlet_nova cloudlet_cmd api_extensions cloudlet_osc cloudlet_client nova bench
    tools tests examples setup.py doc api-ref releasenotes)
# devstack/ holds shell only today; its Python too, once there is some.
if [ -n "$(find devstack -name '*.py' -print -quit)" ]; then
  py+=(devstack)
fi
rc=0
"$VENV/bin/flake8" "$@" "${py[@]}" || rc=1

if ! command -v shellcheck >/dev/null; then
  echo "pep8: shellcheck is not installed (tools/setup.sh installs it)" >&2
  exit 1
fi
shopt -s nullglob
shellcheck -s bash -e SC2154,SC1090,SC1091 tools/*.sh tools/lib/*.sh devstack/*.sh devstack/settings || rc=1
exit $rc
