#!/usr/bin/env bash
# Rolling restart: one broker at a time, each restarted gracefully (SIGTERM:
# it hands its leaderships off, syncs and exits), then waited for until its
# /ready answers 200 and the cluster reports every broker alive with no
# under-replicated or leaderless partition before the next one goes.
#
#   deploy/rolling-restart.sh NAME HTTP_ADDR [NAME HTTP_ADDR ...]
#
# NAME is what RESTART acts on (default `docker restart --time 30 NAME`;
# e.g. RESTART='ssh -n NAME sudo systemctl restart stratad' for hosts).
# HTTP_ADDR is that broker's --http-listen address as seen from here.
# The cluster is asked through the CLI: STRATA_BROKERS (and STRATA_TLS_*
# for TLS); STRATA_CLI names the strata binary (default: strata on PATH).
# TIMEOUT bounds each wait in seconds (default 120).
set -euo pipefail
RESTART=${RESTART:-docker restart --time 30}
CLI=${STRATA_CLI:-strata}
TIMEOUT=${TIMEOUT:-120}
[ $# -ge 2 ] && [ $(($# % 2)) -eq 0 ] || { echo "usage: $0 NAME HTTP_ADDR [NAME HTTP_ADDR ...]" >&2; exit 2; }

healthy() {
  "$CLI" cluster status --output json 2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)
ok = all(b["alive"] for b in j["brokers"]) and j["under_replicated_partitions"] == 0 \
     and j["leaderless_partitions"] == 0
sys.exit(0 if ok else 1)'
}
ready() { # HTTP_ADDR
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$1/ready" || true)
  [ "$code" = 200 ] || [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://$1/ready" || true)" = 200 ]
}
wait_for() { # what command...
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for $what" >&2; exit 1; fi
    sleep 1
  done
}

wait_for "a healthy cluster before starting" healthy
while [ $# -gt 0 ]; do
  name=$1 addr=$2; shift 2
  echo "restarting $name"
  $RESTART "$name" >/dev/null
  wait_for "$name to be ready" ready "$addr"
  wait_for "the cluster to be healthy after $name" healthy
  echo "$name is back; cluster healthy"
done
