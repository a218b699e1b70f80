#!/usr/bin/env bash
# Create .venv and install osteomet with the pins that work on a CPU-only machine.
# Order matters: CPU torch first (an unpinned torch pulls GBs of CUDA), then the rest,
# then pyradiomics 3.0.1 built against the installed numpy (3.1.0 cannot be built).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
# pip's own exit status decides; the grep only hides this machine's noisy find-links warnings.
pipq() {
  local out rc=0
  out=$(python -m pip install --disable-pip-version-check -q "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -v "is ignored: it is neither" | grep -v '^$' || true
  return "$rc"
}
pipq --upgrade pip setuptools wheel
python -c "import torch" 2>/dev/null || pipq torch==2.13.0
pipq -r requirements.txt
python -c "import radiomics" 2>/dev/null || pipq --no-build-isolation pyradiomics==3.0.1
pipq --no-deps -e .
python -c "import osteomet, torch, monai, radiomics, xgboost, SimpleITK" \
  || { echo "setup.sh: the environment is incomplete (see pip output above)" >&2; exit 1; }
echo "osteomet environment ready in .venv"
