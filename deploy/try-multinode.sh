#!/usr/bin/env bash
# docs/deploy.md's commands on one machine, as three hosts: `head` (10.214.0.1) and `node2`
# (10.214.0.2) each run a Ray node, `peer` (10.214.0.200) runs WebRTC peers. Each host is a
# network namespace on a bridge in a fourth, so nothing leaves them; the Ray processes share a
# PID namespace of their own, so `ray stop` sees only them. Needs root, iproute2, util-linux,
# Ray, aiortc, curl. Everything is removed on exit. Usage: sudo deploy/try-multinode.sh
set -euo pipefail
T=$(printf '%04x' $RANDOM)
SW=rmsw$T; H=rmhd$T; N=rmn2$T; P=rmpr$T
LOG=$(mktemp -d /tmp/rm-multinode-XXXX)
declare -A NET=([head]=$H [node2]=$N [peer]=$P)
on() { local host=$1; shift; nsenter -t "$PID1" -p -m --net=/var/run/netns/"${NET[$host]}" -- "$@"; }
say() { printf '\n%s$ %s\n' "$1" "${*:2}"; }
cleanup() {
  if [ -n "${PID1:-}" ]; then on head ray stop --force >/dev/null 2>&1 || true; fi
  if [ -n "${HOLDER:-}" ]; then kill "$HOLDER" 2>/dev/null || true; fi
  for ns in $SW $H $N $P; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$LOG"
}
trap cleanup EXIT

# the three hosts on one bridge
ip netns add $SW; ip -n $SW link add br0 type bridge; ip -n $SW link set br0 up
i=0
for spec in $H:10.214.0.1 $N:10.214.0.2 $P:10.214.0.200; do
  ns=${spec%%:*}; addr=${spec#*:}; i=$((i + 1))
  ip netns add "$ns"; ip -n "$ns" link set lo up
  ip link add rmv$T$i type veth peer name rmb$T$i
  ip link set rmv$T$i netns "$ns"; ip link set rmb$T$i netns $SW
  ip -n $SW link set rmb$T$i master br0; ip -n $SW link set rmb$T$i up
  ip -n "$ns" addr add "$addr/24" dev rmv$T$i; ip -n "$ns" link set rmv$T$i up
done
# pid 1 of the PID namespace reaps what `ray start` leaves behind
REAPER='import os, time
while True:
    try: os.wait()
    except ChildProcessError: time.sleep(0.2)'
ip netns exec $H unshare --pid --fork --mount-proc --kill-child python3 -c "$REAPER" &
HOLDER=$!
sleep 1
PID1=$(awk '{print $1}' /proc/$HOLDER/task/$HOLDER/children)

say head ray start --head --port=6379 --num-cpus=2 --include-dashboard=false --node-ip-address=10.214.0.1 --disable-usage-stats
on head ray start --head --port=6379 --num-cpus=2 --include-dashboard=false \
    --node-ip-address=10.214.0.1 --disable-usage-stats 2>&1 | grep -E "Local node IP|Ray runtime started"
say node2 ray start --address=10.214.0.1:6379 --num-cpus=2 --node-ip-address=10.214.0.2 --disable-usage-stats
on node2 ray start --address=10.214.0.1:6379 --num-cpus=2 --node-ip-address=10.214.0.2 \
    --disable-usage-stats 2>&1 | grep -E "Local node IP|Ray runtime started"
for _ in $(seq 60); do [ "$(on head ray status 2>/dev/null | grep -c ' node_')" = 2 ] && break; sleep 0.5; done
say head ray status
on head ray status 2>&1 | sed -n '/^Active:/,/^Pending:/p'

say head remotemedia serve --ray 10.214.0.1:6379 --host 10.214.0.1 --port 8080 --chain "gain:-6"
nsenter -t "$PID1" -p -m --net=/var/run/netns/$H -- \
    remotemedia serve --ray 10.214.0.1:6379 --host 10.214.0.1 --port 8080 --chain "gain:-6" \
    > "$LOG/front.log" 2>&1 &
FRONT=$!  # nsenter: the front is its child
for _ in $(seq 240); do grep -aq "^serving on" "$LOG/front.log" && break; sleep 0.5; done
grep -aE "^serving on|^worker " "$LOG/front.log"

say peer "remotemedia connect http://10.214.0.1:8080/ --tone 440 --seconds 6 --out a.wav --json &   # and 880 Hz into b.wav"
PEERS=()
for hz in 440 880; do
  on peer remotemedia connect http://10.214.0.1:8080/ --tone $hz --seconds 6 \
      --out "$LOG/$hz.wav" --json > "$LOG/$hz.json" &
  PEERS+=($!)
done
sleep 4
say peer "curl -s http://10.214.0.1:8080/status   # where each session runs (summarized)"
on peer curl -s http://10.214.0.1:8080/status | python3 -c '
import json, sys
s = json.load(sys.stdin)
for w in s["workers"]:
    print("worker {index}: node {node_ip}, alive {alive}, sessions {sessions}, "
          "session host pid {pid}, actor pid {actor_pid}".format(**w))
for x in s["list"]:
    print("session {session}: worker {worker}, node {node}, {state}, "
          "frames in/out {frames_in}/{frames_out}".format(**x))'
wait "${PEERS[@]}"
cat "$LOG/440.json" "$LOG/880.json"
python3 - "$LOG" <<'PY'
import sys, wave
import numpy as np
for hz in (440, 880):
    with wave.open(f"{sys.argv[1]}/{hz}.wav", "rb") as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
        x = np.frombuffer(raw, "<i2").reshape(-1, w.getnchannels())[:, 0] / 32768
    x = x[rate : 5 * rate]
    peak = np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))[1:]) + 1]
    print(f"{hz}.wav: {peak:.0f} Hz at {20 * np.log10(np.sqrt(np.mean(x ** 2))):.1f} dBFS")
PY

say peer curl -s -X POST http://10.214.0.1:8080/workers/0/drain
on peer curl -s -X POST http://10.214.0.1:8080/workers/0/drain; echo
say peer "remotemedia connect http://10.214.0.1:8080/ --tone 660 --seconds 2 --json   # twice"
for hz in 660 770; do
  on peer remotemedia connect http://10.214.0.1:8080/ --tone $hz --seconds 2 --json
done
say head "# the front's log: where each session went"
grep -aE "session [0-9a-f]+: on worker" "$LOG/front.log" | sed 's/^.*INFO stream.transport: //'

say head "kill -TERM <the front>   # as Ctrl-C: it stops its workers"
kill -TERM "$(awk '{print $1}' /proc/$FRONT/task/$FRONT/children)"
wait $FRONT || true
grep -a "^stopped" "$LOG/front.log"
say head ray stop
on head ray stop 2>&1 | grep -o "Stopped all .*"
