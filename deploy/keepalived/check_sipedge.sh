#!/bin/sh
# keepalived check: healthy when sipedge answers GET /ready with 200 within 1 s.
# /ready is served on the admin listener (admin.listen, default 127.0.0.1:9091) without a token.
URL="${SIPEDGE_READY_URL:-http://127.0.0.1:9091/ready}"
exec curl --silent --fail --max-time 1 --output /dev/null "$URL"
