#!/usr/bin/env bash
# The README's first command: set this machine up and bring up the cloudlet in
# a box (tools/box.sh up: a real single-node OpenStack with CloudletDriver),
# then run the main job through it (tools/cloudlet_box/demo.py): boot the test
# guest, capture a base, export and import it, resume it, change it, create
# an overlay, synthesize from an overlay_url and from the overlay's image id,
# and print the timing of each step.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/tools/box.sh" up
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}
PYTHONPATH="$here/tools:$here" exec "$VENV/bin/python" -m cloudlet_box.demo
