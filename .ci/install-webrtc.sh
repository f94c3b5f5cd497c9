#!/usr/bin/env bash
# What the WebRTC transport, its tests and its benchmark need, installed idempotently:
# Debian's chromium (headless browser peer; Playwright drives it through executable_path and never
# downloads a browser of its own), iproute2 (ip netns / veth test hosts), sox (test signals), and
# the Python packages aiortc, aiohttp and playwright. Safe to run again: installed parts are skipped.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PYTHON=${PYTHON:-python3}

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v ip >/dev/null || missing+=(iproute2)
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-webrtc: need root to apt-get install ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! "$PYTHON" -c 'import aiortc, aiohttp, playwright' 2>/dev/null; then
    "$PYTHON" -m pip install --quiet 'aiortc>=1.9' 'aiohttp>=3.9' 'playwright>=1.40'
fi
echo "install-webrtc: chromium $(chromium --version 2>/dev/null | awk '{print $2}'), $("$PYTHON" -c 'import aiortc; print("aiortc", aiortc.__version__)')"
