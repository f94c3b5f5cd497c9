#!/usr/bin/env bash
# What the audio device tests need on a fresh Debian machine: PortAudio (libportaudio2, which brings
# ALSA's libasound2) with ALSA's configuration files, and the sounddevice binding. The tests make
# virtual ALSA devices (tests/devices/conftest.py), so no sound card is needed. Idempotent, quiet.
set -euo pipefail
PYTHON=${PYTHON:-python3}
# libspeexdsp1: the echo canceller both EchoCancel kernels load at run time.
PACKAGES=(libportaudio2 libasound2 libasound2-data libspeexdsp1)
installed=$(dpkg-query -W -f='${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null | grep -c '^installed$' || true)
if [ "$installed" != "${#PACKAGES[@]}" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi
PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check sounddevice
