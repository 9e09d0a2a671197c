#!/usr/bin/env bash
# Run the test suite, by tier (see README.md, "Tests"):
#   quick        unit tests: format, engine, codecs, qcow2, save images, fuzzing,
#                Glance model, API pieces, driver pieces, OSC plugin, configure
#                tool, devstack plugin (default); and the house checks (tools/house.sh
#                --check: flake8 + hacking and shellcheck, the config and policy samples
#                and api-ref/source/parameters.yaml current, the docs, api-ref and
#                release notes built with Sphinx -W)
#   functional   nova 34's own functional harness: real nova-api (our api-paste),
#                conductor, scheduler, placement, compute running CloudletDriver
#                on nova's fake libvirt (extended with save/restore)
#   integration  real libvirtd + QEMU guests, no nova: save/restore, base capture,
#                overlay, synthesis (not in all: e2e drives the same code through nova)
#   e2e          the real box (tools/box.sh up: Keystone, Glance, Placement, Neutron,
#                Nova with CloudletDriver, libvirtd + QEMU; two compute hosts,
#                CLOUDLET_BOX_HOSTS=2: a box up with one is destroyed first), through
#                the `openstack` CLI and raw HTTP, two projects; and the second cloud
#                box2 (one host, own libvirtd, public endpoints behind an emulated WAN
#                path) for handoffs; all but the tests marked `faults`
#   faults       the same clouds, the e2e tests marked `faults`: failure injection into
#                the running clouds (links cut, nova-compute killed or restarted
#                mid-handoff or mid-migration); not in all
#   hosts        only the two-host tests of e2e, faults included, on the same box:
#                base pre-cache, placement, ageing, the concurrency run, live and cold
#                migration (tests/e2e/test_hosts.py, test_migration.py)
#   clouds       only bring up both clouds, box and box2 (no tests)
#   tempest      tempest's compute API smoke tests against the box (tools/tempest.sh)
#   all          quick, functional, e2e, tempest: what CI runs (its time: README.md)
#   full         all, integration and faults
# Extra arguments go to pytest. The house checks run first, but fail the run
# only at the end: the tests run either way.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tier=${1:-quick}
[ $# -gt 0 ] && shift
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}

# Tests that share nothing run on every CPU (pytest-xdist); those that drive the
# host's libvirtd and QEMU run one at a time.
parallel=() serial=()
case "$tier" in
  quick)       parallel=(tests/unit) ;;
  functional)  parallel=(tests/functional) ;;
  integration) serial=(tests/integration) ;;
  e2e|faults|hosts|tempest|clouds) ;;
  all)         parallel=(tests/unit tests/functional) ;;
  full)        parallel=(tests/unit tests/functional); serial=(tests/integration) ;;
  *) echo "usage: $0 [quick|functional|integration|e2e|faults|hosts|tempest|clouds|all|full] [pytest args]" >&2
     exit 2 ;;
esac
in_tier() { local t; for t in "$@"; do [ "$tier" = "$t" ] && return 0; done; return 1; }
"$here/tools/setup.sh"
export CLOUDLET_SETUP_DONE=1   # box.sh up need not run it again
if in_tier quick all full; then
  # shellcheck source=tools/lib/ensure.sh
  . "$here/tools/lib/ensure.sh"
  ensure_box_requirements "$here" "$VENV" "${CLOUDLET_CACHE:-/var/cache/openstack-cloudlet}"
fi
cd "$here"
# Run from the checkout so the tests exercise these sources.
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
# nova 34 services run on native threads; nova's test packages would switch
# the whole run to eventlet without this.
export OS_NOVA_DISABLE_EVENTLET_PATCHING=1
pytest=("$VENV/bin/python" -m pytest -q -ra)
house_rc=0
if in_tier quick all full; then
  "$here/tools/house.sh" --check || house_rc=$?
fi
# CLOUDLET_TEST_WORKERS: pytest-xdist's -n (default auto: one per CPU; 0: none).
tests_rc=0
if ((${#parallel[@]})); then
  # loadgroup: tests marked xdist_group (e.g. real multicast DNS) share one worker.
  "${pytest[@]}" -n "${CLOUDLET_TEST_WORKERS:-auto}" --dist loadgroup "${parallel[@]}" "$@" || tests_rc=$?
fi
if ((${#serial[@]})); then
  "${pytest[@]}" "${serial[@]}" "$@" || tests_rc=$?
fi
((tests_rc == 0)) || exit "$tests_rc"   # no clouds for a tree that fails its own tests
# The box with `1` or `2` compute hosts. Another number of hosts means other tenant
# networks (VXLAN with one, VLANs with two): a box up with another number goes first
# (doc/multi-host.md). Its nova-compute must start against a libvirt without leftover
# domains: the tiers above clean up theirs.
box_up() {
  local recorded
  recorded=$(PYTHONPATH="$here/tools" "$VENV/bin/python" -c \
    'from cloudlet_box import layout; print(layout.recorded_hosts("box"))')
  if [ "$recorded" != 0 ] && [ "$recorded" != "$1" ]; then
    "$here/tools/box.sh" destroy
  fi
  CLOUDLET_BOX_HOSTS=$1 "$here/tools/box.sh" up
}
# Both test clouds: box (two compute hosts: the machine's libvirtd and box-compute2's,
# doc/multi-host.md) and box2 (one host, its own libvirtd, public endpoints through the
# WAN path: doc/handoff.md).
clouds_up() {
  box_up 2
  CLOUDLET_BOX=box2 CLOUDLET_BOX_PORT_OFFSET=100 "$here/tools/box.sh" up
}
if in_tier clouds e2e faults all full; then
  clouds_up
fi
if in_tier e2e all full; then
  # The slowest tests in the log: where the tier's time (README.md, "Tests") goes.
  "${pytest[@]}" tests/e2e -m 'not faults' --durations=15 "$@"
fi
if in_tier faults full; then
  "${pytest[@]}" tests/e2e -m faults "$@"
fi
if in_tier tempest all full; then
  # Stock nova behaviour with the extension loaded, then the project's plugin (counts
  # printed at the end); box2, when up, is the plugin's handoff destination.
  "$here/tools/box.sh" up
  "$here/tools/tempest.sh"
fi
if in_tier hosts; then
  box_up 2
  "${pytest[@]}" tests/e2e/test_hosts.py tests/e2e/test_migration.py "$@"
fi
if ((house_rc)); then
  echo "tools/test.sh: the house checks failed (above: [house] ... FAILED)" >&2
  exit "$house_rc"
fi
