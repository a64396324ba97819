#!/usr/bin/env bash
# Stage issue 28's card run: the workplace's stage.sh (release binary, loaders, hashcat .debs into
# .devrun/), then this project's plan in place of its generic check, so the device call is always
#   run: command "bash .devrun/gpu-check.sh", carry [".devrun"], timeout_s 420
# then give_back. What the plan does and how to read its output: BENCHMARKS.md, "The card run, staged".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash ../shared/device/stage.sh
cp scripts/gpu-plan.sh .devrun/gpu-check.sh
cp scripts/gpu-summary.py .devrun/
bash -n .devrun/gpu-check.sh
python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' .devrun/gpu-summary.py
echo "staged issue 28's plan: run bash .devrun/gpu-check.sh (carry .devrun, timeout_s 420), then give_back"
