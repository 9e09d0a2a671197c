#!/usr/bin/env bash
# Run the test suite, by tier (see README.md, "Tests"):
#   quick        unit tests: format, engine, codecs, qcow2, save images, fuzzing (default)
#   integration  real libvirtd + QEMU guests: save/restore, base capture, overlay, synthesis
#   all          quick + integration (what CI runs)
# Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tier=${1:-quick}
[ $# -gt 0 ] && shift
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}

"$here/tools/setup.sh"
cd "$here"
case "$tier" in
  quick)       selection=(tests/unit) ;;
  integration) selection=(tests/integration) ;;
  all)         selection=(tests/unit tests/integration) ;;
  *) echo "usage: $0 [quick|integration|all] [pytest args]" >&2; exit 2 ;;
esac
# Run from the checkout so the tests exercise these sources.
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m pytest -q -ra "${selection[@]}" "$@"
