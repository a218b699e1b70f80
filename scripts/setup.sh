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
# nnU-Net v2 (the `nnunet` extra) without its declared dependencies: timm would pull a newer torch.
# Its planning, trainers and predictor run on the pinned torch; the rest of its needs come after.
if ! python -c "import nnunetv2, acvl_utils, batchgenerators, batchgeneratorsv2, dynamic_network_architectures, blosc2, skimage, tqdm" 2>/dev/null; then
  pipq --no-deps nnunetv2==2.8.1 acvl_utils==0.2.6 dynamic_network_architectures==0.4.4 batchgeneratorsv2==0.3.6
  pipq batchgenerators blosc2 graphviz imagecodecs scikit-image seaborn tifffile yacs tqdm requests
  python -c "import torch, sys; sys.exit(not torch.__version__.startswith('2.13.0'))" \
    || { echo "setup.sh: installing nnU-Net changed torch (expected 2.13.0)" >&2; exit 1; }
fi
pipq --no-deps -e .
python -c "import osteomet, torch, monai, radiomics, xgboost, SimpleITK" \
  || { echo "setup.sh: the environment is incomplete (see pip output above)" >&2; exit 1; }
echo "osteomet environment ready in .venv"
