#!/usr/bin/env bash
# Set up, then run the whole test suite (what .ci/run calls). Ray tests run in a loopback-only network
# namespace (see ../shared/PITFALLS.md); everything else runs directly.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export EVOPRUNE_DATA_DIR=${EVOPRUNE_DATA_DIR:-$(cd .. && pwd)/shared/data}
export RAY_USAGE_STATS_ENABLED=0

run_pytest() {  # pytest exit code 5 = "no tests collected": not a failure for a selection
  python3 -m pytest "$@"
  local rc=$?
  [ "$rc" -eq 5 ] && rc=0
  return "$rc"
}

run_pytest -m "not ray" -q "$@"
status=$?
if [ -n "$(ls tests/test_distributed*.py 2>/dev/null)" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null; then
    unshare -n bash -c "ip link set lo up && $(declare -f run_pytest); run_pytest -m ray -q $*" || status=1
  else
    echo "Ray tests need a private network namespace (run as root with unshare); running them anyway" >&2
    run_pytest -m ray -q "$@" || status=1
  fi
fi
exit "$status"
