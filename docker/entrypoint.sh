#!/bin/bash
# The image's entry point. With no arguments or only flags, runs kvcompactd with the image's
# data directory (flags given are added after it, so --data-dir may be overridden); with a
# command (kvcompactd, kvcompact, bash, ...) runs that command as it is.
set -euo pipefail
if [ $# -eq 0 ] || [[ $1 == -* ]]; then
  exec kvcompactd --data-dir "${KVC_DATA_DIR:-/var/lib/kvcompact/data}" "$@"
fi
exec "$@"
