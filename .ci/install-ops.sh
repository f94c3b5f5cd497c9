#!/usr/bin/env bash
# The real servers the operations tests talk to (issue 12): Prometheus (scrapes `serve`'s /metrics,
# queried over its HTTP API) and coturn (a TURN relay on a third test host). Only the binaries are
# used: the tests start them with their own configuration in a temporary directory, so the
# services Debian would start are not needed (and a container has no init to start them).
# Idempotent, quiet. Python side: prometheus-client and the OpenTelemetry SDK come with `make dev`
# (extras webrtc and otel).
set -euo pipefail
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v turnserver >/dev/null || missing+=(coturn)
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-ops: need root to apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # policy-rc.d 101: do not start the packaged services during the install
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi
echo "install-ops: $(prometheus --version 2>&1 | head -1 | awk '{print $1, $3}'), coturn $(turnserver --version 2>&1 | head -1)"
