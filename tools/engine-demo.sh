#!/usr/bin/env bash
# The synthesis engine alone, without OpenStack: boot, capture a base, resume,
# change, overlay, synthesize over HTTP, with timings (tools/engine_demo.py).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/tools/setup.sh"
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}
PYTHONPATH="$here" exec "$VENV/bin/python" "$here/tools/engine_demo.py"
