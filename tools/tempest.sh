#!/usr/bin/env bash
# Tempest against the running box (tools/box.sh up): two sets, each with its counts:
#   smoke     tempest's compute and network API smoke tests (stock nova and Neutron intact)
#   cloudlet  the project's tempest plugin (cloudlet_tempest_plugin: API and scenario
#             tests of the cloudlet extension, doc/tempest-plugin.md)
#   tools/tempest.sh [smoke|cloudlet|both (default)] [more `tempest run` options, e.g. --slowest]
# Workspace and config: /var/lib/openstack-cloudlet/<box>/tempest (written by
# tools/cloudlet_box/tempest_conf.py); known limits of the box are skipped by
# config flags, the rest by tools/cloudlet_box/tempest-exclude.txt.
# Prints passed/failed/skipped and the wall time of each set; exits 1 if a test
# failed (or a set ran no test at all).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}
# Two workers on the two cores: ~20% faster than one, and the load stays the same.
CONCURRENCY=${TEMPEST_CONCURRENCY:-2}
sets=${1:-both}
case "$sets" in smoke|cloudlet|both) [ $# -gt 0 ] && shift ;; *) sets=both ;; esac

workspace=$(PYTHONPATH="$here/tools" "$VENV/bin/python" -m cloudlet_box.tempest_conf)
cd "$workspace"

count() { sed -n "s/^ - $1: *\([0-9]*\).*/\1/p" "$workspace/logs/last-run.txt" | tail -1; }

# run_set LABEL REGEX [tempest run options]: one `tempest run`, its failures re-run once.
run_set() {
  local label=$1 regex=$2 started=$SECONDS
  shift 2
  local args=(--regex "$regex" --concurrency "$CONCURRENCY")
  local exclude="$here/tools/cloudlet_box/tempest-exclude.txt"
  [ -f "$exclude" ] && args+=(--exclude-list "$exclude")
  set +e
  "$VENV/bin/tempest" run "${args[@]}" "$@" 2>&1 | tee "$workspace/logs/last-run.txt"
  set -e
  local passed failed skipped
  passed=$(count Passed); failed=$(count Failed); skipped=$(count Skipped)
  if [ "${failed:-0}" != 0 ] && [ "${TEMPEST_RERUN_FAILED:-1}" = 1 ]; then
    # Once seen on a freshly started box: two security-group tests got a 403 from
    # Neutron's policy, then passed on every later run. Re-run the failures once
    # and say so, rather than hide them or fail on a cold start.
    echo "[tempest] $label, first run: passed=$passed failed=$failed skipped=$skipped; re-running the failures once"
    local first_failed=$failed rerun_passed
    set +e
    "$VENV/bin/stestr" run --failing 2>&1 | tee "$workspace/logs/last-run.txt"
    set -e
    rerun_passed=$(count Passed); failed=$(count Failed)
    passed=$((passed + ${rerun_passed:-0}))
    echo "[tempest] $label, re-run of the $first_failed failure(s): passed=${rerun_passed:-0} failed=${failed:-?}"
  fi
  local wall=$((SECONDS - started))
  results+=("[tempest] $label: passed=${passed:-?} failed=${failed:-?} skipped=${skipped:-?} wall=$((wall / 60))m$((wall % 60))s")
  [ -n "$passed" ] && [ "${failed:-1}" = 0 ]
}

results=() rc=0
if [ "$sets" != cloudlet ]; then
  # = --smoke limited to tempest.api.compute and tempest.api.network (tempest run
  # refuses --smoke with --regex), and the dashboard's log-in; tempest's other
  # scenario tests need SSH into the guest.
  run_set 'compute, network and dashboard smoke' \
    '^tempest\.(api\.(compute|network)\.|scenario\.test_dashboard_basic_ops\.).*\[.*\bsmoke\b' "$@" || rc=1
fi
if [ "$sets" != smoke ]; then
  run_set 'cloudlet plugin' '^cloudlet_tempest_plugin\.' "$@" || rc=1
fi
printf '%s\n' "${results[@]}"
echo "[tempest] concurrency $CONCURRENCY; log $workspace/logs/tempest.log"
exit "$rc"
