#!/usr/bin/env bash
# The README's first command: set this machine up (tools/setup.sh), then run
# the main job (tools/demo.py): a demo synthesis with the timing of each step.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/tools/setup.sh"
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}
PYTHONPATH="$here" exec "$VENV/bin/python" "$here/tools/demo.py"
