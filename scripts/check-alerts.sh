#!/usr/bin/env bash
# Checks the Prometheus configuration and alerting rules offline (no target needs
# to be running): promtool check config config/prometheus.yml (which also checks
# the rule files it loads), promtool check rules config/alerts.yml, and the rules'
# unit tests, promtool test rules config/alerts.test.yml.
#   scripts/check-alerts.sh
# Needs promtool: Debian's `prometheus` package ships it (apt-get install prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "check-alerts: promtool is not on PATH; install it with: apt-get install prometheus" >&2
  exit 1
fi

status=0
run() {
  echo "+ $*"
  if ! "$@"; then
    echo "check-alerts: FAILED: $*" >&2
    status=1
  fi
}

promtool --version 2>&1 | head -n 1
run promtool check config config/prometheus.yml
run promtool check rules config/alerts.yml
run promtool test rules config/alerts.test.yml

if [ "$status" -ne 0 ]; then
  echo "check-alerts: the Prometheus configuration or alerting rules have errors (see above)" >&2
  exit 1
fi
echo "check-alerts: ok"
