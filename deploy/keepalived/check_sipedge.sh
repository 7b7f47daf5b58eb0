#!/bin/sh
# keepalived check: healthy when sipedge answers GET /ready with 200 within 1 s.
# /ready is served, without a token, on the admin listener: `admin.listen`, which by default is
# the metrics listener `metrics.listen`, default 127.0.0.1:9090 (docs/configuration.md).
# A draining (SIGTERM, POST /api/node/drain), starting or dead sipedge answers 503 or nothing,
# and keepalived moves the VIP to the other node.
# Usage: check_sipedge.sh [PORT [HOST]]   (defaults 9090 127.0.0.1; SIPEDGE_READY_URL overrides)
PORT="${1:-9090}"
HOST="${2:-127.0.0.1}"
URL="${SIPEDGE_READY_URL:-http://$HOST:$PORT/ready}"
exec curl --silent --fail --max-time 1 --output /dev/null "$URL"
