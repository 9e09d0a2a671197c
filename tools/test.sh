#!/usr/bin/env bash
# Run the test suite, by tier (see README.md, "Tests"):
#   quick        unit tests: format, engine, codecs, qcow2, save images, fuzzing,
#                Glance model, API pieces, driver pieces (default)
#   functional   nova 34's own functional harness: real nova-api (our api-paste),
#                conductor, scheduler, placement, compute running CloudletDriver
#                on nova's fake libvirt (extended with save/restore)
#   integration  real libvirtd + QEMU guests: save/restore, base capture, overlay, synthesis
#   all          all of the above (what CI runs)
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
  functional)  selection=(tests/functional) ;;
  integration) selection=(tests/integration) ;;
  all)         selection=(tests/unit tests/functional tests/integration) ;;
  *) echo "usage: $0 [quick|functional|integration|all] [pytest args]" >&2; exit 2 ;;
esac
# Run from the checkout so the tests exercise these sources.
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
# nova 34 services run on native threads; nova's test packages would switch
# the whole run to eventlet without this.
export OS_NOVA_DISABLE_EVENTLET_PATCHING=1
exec "$VENV/bin/python" -m pytest -q -ra "${selection[@]}" "$@"
