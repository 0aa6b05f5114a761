#!/usr/bin/env bash
# Install what tests/apps/test_browser.py needs: Debian's chromium and Playwright's Python package.
# Run inside the activated venv. Playwright drives /usr/bin/chromium; its own browser download
# (`playwright install`) is never used. Idempotent: does nothing when both are present.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
/usr/bin/chromium --version

python -c "import playwright" 2>/dev/null || python -m pip install -q "playwright>=1.45"
python -c "import playwright.sync_api; print('playwright', __import__('importlib.metadata').metadata.version('playwright'))"
