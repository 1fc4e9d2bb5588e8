#!/usr/bin/env bash
# Create (or update) the course's virtual environment in .venv.
#   bash scripts/setup.sh          the course: notebooks + JupyterLab
#   bash scripts/setup.sh dev      the tests: pytest, nbmake, OpenMoji for the pocket data
# torch comes first, as torch==2.13.0 (a CPU build on the course's reference
# machines); an existing torch in .venv is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-course}"
case "$mode" in
  course) extra="lab" ;;
  dev) extra="dev" ;;
  *) echo "usage: bash scripts/setup.sh [course|dev]" >&2; exit 2 ;;
esac
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q torch==2.13.0
fi
.venv/bin/python -m pip install -q -e ".[$extra]"
# The CLIP vocabulary file, read as package data (see requirements.txt).
.venv/bin/python -m pip install -q --no-deps "open-clip-torch==3.3.0"
echo "ready: .venv ($mode)"
