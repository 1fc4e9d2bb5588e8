#!/usr/bin/env bash
# Create (or update) the course's virtual environment in .venv.
#   bash scripts/setup.sh          the course: notebooks + JupyterLab
#   bash scripts/setup.sh dev      the tests: pytest, nbmake, OpenMoji for the pocket data,
#                                  open-clip-torch for the tokenizer's cross-checks
#   bash scripts/setup.sh site     the course website and its browser tests
#   bash scripts/setup.sh ci       dev and site together, in one pip run (.ci/run)
# Add "locked" (bash scripts/setup.sh course locked) for exactly the versions CI's main run passed
# with (requirements-lock.txt, a pip constraints file; see scripts/lock.py); without it pip takes
# the newest versions the floors allow.
# torch comes first, as torch==2.13.0 (the version the tests run with); an
# existing torch in .venv is kept. pip picks the build: from PyPI on Linux that
# is a CUDA build (several GB). For PyTorch's CPU-only build, install it first,
# as PyTorch documents (see the README):
#   python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-course}"
lock="${2:-}"
case "$lock" in
  "") constraints=() ;;
  locked) constraints=(-c requirements-lock.txt) ;;
  *) echo "usage: bash scripts/setup.sh [course|dev|site|ci] [locked]" >&2; exit 2 ;;
esac
case "$mode" in
  course) extra="lab" ;;
  dev) extra="dev" ;;
  site) extra="site" ;;  # the course website and its browser tests (scripts/build_site.py, scripts/ci_site.sh)
  ci) extra="dev,site" ;;
  *) echo "usage: bash scripts/setup.sh [course|dev|site|ci]" >&2; exit 2 ;;
esac
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q ${constraints[@]+"${constraints[@]}"} torch==2.13.0
fi
.venv/bin/python -m pip install -q ${constraints[@]+"${constraints[@]}"} -e ".[$extra]"
if [ "$mode" = dev ] || [ "$mode" = ci ]; then
  # OpenAI's original CLIP merges list and SimpleTokenizer, which the tokenizer
  # tests compare against; --no-deps keeps torchvision and timm out.
  .venv/bin/python -m pip install -q --no-deps "open-clip-torch==3.3.0"
fi
echo "ready: .venv ($mode${lock:+, $lock})"
