#!/usr/bin/env bash
# What the audio device tests need on a fresh Debian machine: PortAudio (libportaudio2, which brings
# ALSA's libasound2) with ALSA's configuration files, and the sounddevice binding. The tests make
# virtual ALSA devices (tests/devices/conftest.py), so no sound card is needed. Idempotent, quiet.
set -euo pipefail
PYTHON=${PYTHON:-python3}
# libspeexdsp1: Speex's echo canceller (EchoCancel(algorithm="speex")) loads it at run time;
# espeak-ng: real speech for the echo benchmark's espeak rows (benchmarks/echo_quality.py).
PACKAGES=(libportaudio2 libasound2 libasound2-data libspeexdsp1 espeak-ng)
installed=$(dpkg-query -W -f='${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null | grep -c '^installed$' || true)
if [ "$installed" != "${#PACKAGES[@]}" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi
PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check sounddevice
