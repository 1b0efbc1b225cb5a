#!/bin/sh
# Debian's prometheus (the server and promtool, 2.42) for the alert-rule tests (tests/test_alerts.py)
# and the drift test against a real Prometheus (tests/test_prometheus.py), which start their own
# server. CI runs this before the tests; with CI set, those tests fail rather than skip without it.
# Idempotent: does nothing when both binaries are there. Needs root (apt-get). The package's own
# service is not started: a policy-rc.d denies it for the install, unless one is already in place.
set -eu

if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update
apt-get install -y --no-install-recommends prometheus
/usr/bin/promtool --version
