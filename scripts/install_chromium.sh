#!/bin/sh
# Debian's chromium for the browser test of /docs and /redoc (tests/pages/test_docs_browser.py).
# CI runs this before the tests; with CI set, that test fails rather than skips without it.
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (apt-get).
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium
/usr/bin/chromium --version
