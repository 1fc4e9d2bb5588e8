#!/usr/bin/env bash
# The course with the LOWEST versions that requirements.txt allows, in a second
# environment (.venv-lower), so that the lower bounds it promises are tested.
#
#   bash scripts/test_lower_bounds.sh
#
# 1. The constraints file .venv-lower/lower-bounds.txt is generated from
#    requirements.txt ("name>=X" becomes "name==X"; the bounds are written only
#    there), except torch: torch==2.13.0, the CPU build that CI has (the bound
#    torch>=2.11 is not installed here; see the README).
# 2. The package and its dev extra are installed under those constraints (the
#    test tools themselves are not constrained), then open-clip-torch with
#    --no-deps for the tokenizer's cross-checks, as scripts/setup.sh dev does.
# 3. It runs the unit tests (all of tests/ except the notebook runs on SD-shaped
#    models) and, with nbmake, the notebooks that lean most on library
#    internals: attention capture (05), the hand-written loops (07),
#    img2img/inpainting (08), editing (10), LoRA with peft (11) and the ControlNet
#    (12) where present;
#    05 and 08 also on the SD-shaped test models.
set -euo pipefail
cd "$(dirname "$0")/.."
started_at=$(date +%s)
venv=.venv-lower
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip

constraints="$venv/lower-bounds.txt"
echo "torch==2.13.0" > "$constraints"
while IFS= read -r line; do
  requirement="${line%%#*}"
  requirement="$(echo "$requirement" | tr -d '[:space:]')"
  [ -z "$requirement" ] && continue
  case "$requirement" in
    torch\>=*) continue ;;
    *\>=*) echo "${requirement/>=/==}" >> "$constraints" ;;
    *) echo "requirements.txt: '$requirement' has no lower bound (name>=version)" >&2; exit 2 ;;
  esac
done < requirements.txt
echo "lower bounds under test:"; sed 's/^/  /' "$constraints"

"$venv/bin/python" -m pip install -q -c "$constraints" torch==2.13.0
"$venv/bin/python" -m pip install -q -c "$constraints" -e ".[dev]"
"$venv/bin/python" -m pip install -q --no-deps "open-clip-torch==3.3.0"
# pip -c makes these exact; this check says so in the log, and fails if not.
"$venv/bin/python" - "$constraints" <<'EOF'
import sys
from importlib.metadata import version
from packaging.version import Version
for line in open(sys.argv[1]):
    name, wanted = line.strip().split("==")
    installed = version(name)
    # (2.13.0+cpu is 2.13.0; 0.42.0 is 0.42)
    assert Version(Version(installed).public) == Version(wanted), f"{name}: {installed} installed, {wanted} wanted"
    print(f"  installed {name} {installed}")
EOF

shopt -s nullglob
internals_notebooks=(notebooks/05_*.ipynb notebooks/07_*.ipynb notebooks/08_*.ipynb notebooks/10_*.ipynb notebooks/11_*.ipynb notebooks/12_*.ipynb)
failed=0  # all three runs go on after a failure, so one log shows every failure
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests --ignore=tests/test_notebooks_sd_shaped.py || failed=1
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_notebooks_sd_shaped.py \
  -k "05_cross_attention or 08_img2img_inpainting" || failed=1
"$venv/bin/python" -m pytest -q -p no:cacheprovider --nbmake "${internals_notebooks[@]}" || failed=1
elapsed_s=$(( $(date +%s) - started_at ))
if [ "$failed" -ne 0 ]; then
  echo "lower bounds: FAILED (see above), after $elapsed_s s" >&2
  exit 1
fi
echo "lower bounds: passed in $elapsed_s s"
