#!/bin/sh
# Container health: the broker's HTTP listener answers /health (plain HTTP,
# or HTTPS when the broker runs TLS).
port=${STRATA_HTTP_LISTEN##*:}
curl -fsS -o /dev/null "http://127.0.0.1:${port:-9294}/health" \
  || curl -fsSk -o /dev/null "https://127.0.0.1:${port:-9294}/health"
