#!/usr/bin/env bash
# Small-packet UDP through each data path: `iperf3 -u -l 64 -b 0` from
# `sender` to `receiver` of scenarios/bridge-throughput.toml, inside a world
# kept up with `vswitch up`, backends alternating, REPEAT rounds in one
# session. Prints packets per second sent and received (iperf3's receiver
# count) per run and the medians, and the ratio userspace / kernel.
#
#   benches/udp64.sh                       # 3 rounds of 4 s
#   REPEAT=5 SECS=10 BACKENDS="userspace kernel" benches/udp64.sh
#
# Needs root, iperf3 and a release build. On 2 cores the receiving iperf3
# is usually what limits the received rate (loss is printed): compare the
# backends side by side, never across sessions.
set -euo pipefail
cd "$(dirname "$0")/.."

repeat="${REPEAT:-3}"
secs="${SECS:-4}"
backends="${BACKENDS:-userspace kernel}"
vswitch="${VSWITCH:-./target/release/vswitch}"
command -v iperf3 >/dev/null || { echo "udp64: iperf3 is not installed" >&2; exit 2; }
if [[ -z "${VSWITCH:-}" ]]; then
    cargo build --release --quiet -p vswitch
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scenario=scenarios/bridge-throughput.toml
receiver_ip=10.100.0.3

for ((r = 1; r <= repeat; r++)); do
    for b in $backends; do
        out=$("$vswitch" up --backend "$b" "$scenario")
        id=$(awk '/is up/ {print $2}' <<<"$out")
        "$vswitch" exec --world "$id" receiver -- iperf3 -s -1 -D >/dev/null
        # Wait (bounded) until the server listens.
        for _ in $(seq 50); do
            "$vswitch" exec --world "$id" receiver -- ss -Hlun sport = :5201 | grep -q . && break
            sleep 0.1
        done
        "$vswitch" exec --world "$id" sender -- \
            iperf3 -c "$receiver_ip" -u -l 64 -b 0 -t "$secs" -J >"$work/$b-$r.json" || true
        "$vswitch" down "$id" >/dev/null
        python3 - "$work/$b-$r.json" "$b" "$r" <<'PY' | tee -a "$work/rows"
import json, sys
s = json.load(open(sys.argv[1]))["end"]["sum"]
pk, lost, t = s["packets"], s["lost_packets"], s["seconds"]
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{pk / t:.0f}\t{(pk - lost) / t:.0f}\t{100 * lost / max(pk, 1):.1f}")
PY
    done
done

python3 - "$work/rows" <<'PY'
import sys, statistics
from collections import defaultdict
sent, recv = defaultdict(list), defaultdict(list)
for line in open(sys.argv[1]):
    b, _, s, r, _ = line.split("\t")
    sent[b].append(float(s)); recv[b].append(float(r))
print(f"{'backend':<10} {'runs':>4} {'sent kpps':>10} {'received kpps':>14}")
for b in sent:
    print(f"{b:<10} {len(sent[b]):>4} {statistics.median(sent[b])/1e3:>10.0f} {statistics.median(recv[b])/1e3:>14.0f}")
if "userspace" in recv and "kernel" in recv:
    print(f"received userspace / kernel = {statistics.median(recv['userspace']) / statistics.median(recv['kernel']):.2f}")
PY
