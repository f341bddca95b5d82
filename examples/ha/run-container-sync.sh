#!/bin/sh
# Hand a container's data over to the standby: converge, then exit.
# Usage: run-container-sync.sh NAME
set -eu
name="$1"
systemctl stop "twinsync@$name" || true
if twinsync --config "/etc/twinsync/$name.toml" --instance "$name" --exit-on-no-events; then
    echo "$name: replicas identical; safe to start it on the standby"
else
    echo "$name: NOT in sync (exit $?); do not fail over yet" >&2
    exit 1
fi
