#!/usr/bin/env bash
# GPU readiness in one run (under 5 minutes on one GPU), one summary line per check:
#   1. the GPU tests (pytest -m gpu): evaluator on GPU = CPU masks, one Ray actor per GPU (num_gpus=1), bf16 default
#   2. a quick search on the GPU with --workers 1 (search_spaces/quick.yaml, shortened)
#   3. the fitness speed benchmark on the GPU (benchmarks/fitness_speed.py --device cuda)
# On a machine without a CUDA GPU it prints "no GPU: skipped" and exits 0, so CI stays green.
# Logs and outputs go to $DEVICE_CHECK_OUT (default: a fresh temporary directory), named in the last line.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

gpus=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null)
if [ -z "$gpus" ] || [ "$gpus" -eq 0 ]; then
  echo "device_check: no GPU: skipped"
  exit 0
fi

export EVOPRUNE_DATA_DIR=${EVOPRUNE_DATA_DIR:-$(cd .. && pwd)/shared/data}
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
OUT=${DEVICE_CHECK_OUT:-$(mktemp -d -t evoprune-device-check.XXXXXX)}
mkdir -p "$OUT"
name=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))")
echo "device_check: $gpus x $name, torch $("$PY" -c 'import torch; print(torch.__version__)')"
status=0

# One line per check, read from its log or output (a summary that cannot be read prints nothing after the colon).
summary_gpu_tests() { grep -E '(passed|failed|error|skipped)' "$OUT/gpu-tests.log" | tail -1; }
summary_quick_search() {
  "$PY" - "$OUT/quick/best.json" <<'PY'
import json, sys
best = json.load(open(sys.argv[1]))
row = best["best"][0]
ppl = row.get("perplexity")
print(f"best {row.get('text') or row['formula']} fitness {row['fitness']:.4g}, perplexity {ppl if ppl is None else round(ppl, 2)}, "
      f"{len(best.get('history', []))} generations on {best['protocol'].get('device')} {best['protocol'].get('dtype')}")
PY
}
summary_fitness_speed() { grep -E '^\| evoprune' "$OUT/fitness-speed.log" | head -1; }

# run NAME COMMAND...: COMMAND's output goes to $OUT/NAME.log; then one line: verdict, seconds, summary
run() {
  local check=$1
  shift
  local start=$SECONDS verdict=ok
  timeout "${CHECK_TIMEOUT:-240}" "$@" >"$OUT/$check.log" 2>&1 || { verdict=FAIL; status=1; }
  echo "$check: $verdict in $((SECONDS - start)) s: $("summary_${check//-/_}" 2>/dev/null | tr '\n' ' ' | cut -c1-220)"
}

run gpu-tests "$PY" -m pytest -m gpu -q -p no:cacheprovider -rs tests/test_gpu.py
run quick-search "$PY" -m evoprune.cli.app search --config search_spaces/quick.yaml --out "$OUT/quick" --workers 1 \
  --generations 4 --force
run fitness-speed "$PY" benchmarks/fitness_speed.py --device cuda --repeats 3
echo "device_check: $([ "$status" -eq 0 ] && echo all checks passed || echo SOME CHECKS FAILED); logs in $OUT"
exit "$status"
