#!/usr/bin/env bash
# CI, after the test run: the course website and the real-browser tests (tests/test_browser.py).
# .ci/run's test run wrote its outputs into this checkout's notebooks (PYTEST_ADDOPTS=--overwrite),
# so the site is built from them (--execute never: no notebook runs a second time).
# Chromium comes from Debian's packages; Playwright from PyPI drives it (never `playwright install`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
    || echo "ci_site: could not install Debian's chromium; the browser tests will skip and say so"
fi
bash scripts/setup.sh site
start=$(date +%s)
.venv/bin/python scripts/build_site.py --execute never
echo "ci_site: site built in $(( $(date +%s) - start )) s"
start=$(date +%s)
.venv/bin/python -m pytest -m browser tests/test_browser.py -v -rs
echo "ci_site: browser tests took $(( $(date +%s) - start )) s"
