#!/usr/bin/env bash
# Tempest's compute and network API smoke tests against the running box (tools/box.sh up).
#   tools/tempest.sh [more `tempest run` options, e.g. --slowest]
# Workspace and config: /var/lib/openstack-cloudlet/<box>/tempest (written by
# tools/cloudlet_box/tempest_conf.py); known limits of the box are skipped by
# config flags, the rest by tools/cloudlet_box/tempest-exclude.txt.
# Prints passed/failed/skipped and the wall time; exits 1 only if a test failed
# (or tempest ran no test at all).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}
# Two workers on the two cores: ~20% faster than one, and the load stays the same.
CONCURRENCY=${TEMPEST_CONCURRENCY:-2}

workspace=$(PYTHONPATH="$here/tools" "$VENV/bin/python" -m cloudlet_box.tempest_conf)
# = --smoke limited to tempest.api.compute and tempest.api.network (tempest run
# refuses --smoke with --regex); the scenario tests need SSH into the guest.
args=(--regex '^tempest\.api\.(compute|network)\..*\[.*\bsmoke\b' --concurrency "$CONCURRENCY")
exclude="$here/tools/cloudlet_box/tempest-exclude.txt"
[ -f "$exclude" ] && args+=(--exclude-list "$exclude")

cd "$workspace"
set +e
"$VENV/bin/tempest" run "${args[@]}" "$@" 2>&1 | tee "$workspace/logs/last-run.txt"
set -e
wall=$SECONDS   # the whole script, config included

count() { sed -n "s/^ - $1: *\([0-9]*\).*/\1/p" "$workspace/logs/last-run.txt" | tail -1; }
passed=$(count Passed); failed=$(count Failed); skipped=$(count Skipped)
if [ "${failed:-0}" != 0 ] && [ "${TEMPEST_RERUN_FAILED:-1}" = 1 ]; then
  # Once seen on a freshly started box: two security-group tests got a 403 from
  # Neutron's policy, then passed on every later run. Re-run the failures once
  # and say so, rather than hide them or fail on a cold start.
  echo "[tempest] first run: passed=$passed failed=$failed skipped=$skipped; re-running the failures once"
  first_failed=$failed
  set +e
  "$VENV/bin/stestr" run --failing 2>&1 | tee "$workspace/logs/last-run.txt"
  set -e
  rerun_passed=$(count Passed); failed=$(count Failed)
  passed=$((passed + ${rerun_passed:-0}))
  echo "[tempest] re-run of the $first_failed failure(s): passed=${rerun_passed:-0} failed=${failed:-?}"
fi
echo "[tempest] compute and network smoke: passed=${passed:-?} failed=${failed:-?} skipped=${skipped:-?}" \
     "wall=$((wall / 60))m$((wall % 60))s (concurrency $CONCURRENCY; log $workspace/logs/tempest.log)"
[ -n "$passed" ] && [ "${failed:-1}" = 0 ]
