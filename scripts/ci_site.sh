#!/usr/bin/env bash
# CI's last step: the course website and the real-browser tests (tests/test_browser.py).
#
#   bash scripts/ci_site.sh install-browser             Debian's Chromium, if it is not there
#   bash scripts/ci_site.sh build-and-test [NOTEBOOKS]  build the site from executed notebooks
#                                                       (default build/executed), then the browser tests
#
# .ci/run's test run kept its executed notebooks in build/executed (--executed-dir), so the site is
# built from those (--execute never: no notebook runs a second time, and notebooks/ is never written).
# Chromium comes from Debian's packages; Playwright from PyPI drives it (never `playwright install`).
# The environment is .venv with the site extra (scripts/setup.sh site, or ci).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
case "$mode" in
  install-browser)
    if [ ! -x /usr/bin/chromium ]; then
      { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
        || echo "ci_site: could not install Debian's chromium; the browser tests will skip and say so"
    fi
    echo "ci_site: chromium $( /usr/bin/chromium --version 2>/dev/null || echo 'not installed')"
    ;;
  build-and-test)
    executed="${2:-build/executed}"
    start=$(date +%s)
    .venv/bin/python scripts/build_site.py --execute never --notebooks "$executed"
    echo "ci_site: site built in $(( $(date +%s) - start )) s"
    start=$(date +%s)
    .venv/bin/python -m pytest -m browser tests/test_browser.py -v -rs
    echo "ci_site: browser tests took $(( $(date +%s) - start )) s"
    ;;
  *) echo "usage: bash scripts/ci_site.sh install-browser | build-and-test [EXECUTED_NOTEBOOKS_DIR]" >&2; exit 2 ;;
esac
