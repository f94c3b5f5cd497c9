#!/usr/bin/env bash
# What the Ray backend (stream.ray), its tests and its benchmark need, installed idempotently:
# plain `ray` (core: actors, `ray start`), not `ray[default]` (dashboard, aiohttp extras), and
# iproute2 (the tests run the cluster inside a network namespace). Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PYTHON=${PYTHON:-python3}
RAY_SPEC=${RAY_SPEC:-ray>=2.40,<3}

if ! command -v ip >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-ray: need root to apt-get install iproute2" >&2
        exit 1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
fi

if ! "$PYTHON" -c 'import ray' 2>/dev/null; then
    "$PYTHON" -m pip install --quiet "$RAY_SPEC"
fi
echo "install-ray: $("$PYTHON" -c 'import ray; print("ray", ray.__version__)')"
