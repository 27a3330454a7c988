#!/bin/bash
# The image's health probe: exits 0 iff kvcompactd's GET /healthz answers "200". Uses bash's
# /dev/tcp, so the image needs neither curl nor wget. The worker answers 503 while it drains.
# Environment: KVC_HTTP_PORT (default 7402, kvcompactd's --http-port),
#              KVC_HEALTH_HOST (default 127.0.0.1).
set -euo pipefail
host=${KVC_HEALTH_HOST:-127.0.0.1}
port=${KVC_HTTP_PORT:-7402}
if ! exec 3<>"/dev/tcp/$host/$port"; then
  echo "healthcheck: no listener on $host:$port" >&2
  exit 1
fi
printf 'GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
status=""
IFS= read -r -t 5 status <&3 || true
exec 3<&-
status=${status%$'\r'}
if [[ $status =~ ^HTTP/1\.[01]\ 200 ]]; then
  exit 0
fi
echo "healthcheck: /healthz on $host:$port answered '${status:-nothing}'" >&2
exit 1
