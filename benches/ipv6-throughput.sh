#!/usr/bin/env bash
# TCP throughput over IPv6 beside IPv4 on the same paths, in one world kept
# up with `vswitch up`: `iperf3 -4` and `iperf3 -6` alternating, REPEAT
# rounds, for two paths through each backend:
#
#   l2   container → container on one dual-stack bridge network
#   nat  container → lan external, masqueraded (IPv4) / NAT66 (IPv6)
#
# Prints Gbit/s per run, the medians, and IPv6 / IPv4 per path and backend
# (the issue's goal: IPv6 within 10 % of IPv4 on the same path).
#
#   benches/ipv6-throughput.sh                     # 3 rounds of 3 s
#   REPEAT=5 SECS=10 BACKENDS="userspace kernel" benches/ipv6-throughput.sh
#
# Needs root, iperf3 and a release build. On 2 cores the figures move with
# whatever else runs: compare the families side by side, in one session.
set -euo pipefail
cd "$(dirname "$0")/.."

repeat="${REPEAT:-3}"
secs="${SECS:-3}"
backends="${BACKENDS:-userspace kernel}"
vswitch="${VSWITCH:-./target/release/vswitch}"
command -v iperf3 >/dev/null || { echo "ipv6-throughput: iperf3 is not installed" >&2; exit 2; }
if [[ -z "${VSWITCH:-}" ]]; then
    cargo build --release --quiet -p vswitch
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scenario="$work/ipv6-throughput.toml"
cat >"$scenario" <<'TOML'
name = "bench: IPv6 beside IPv4"
tags = ["ipv6", "bench"]

[[machine]]
name = "m1"
ip6 = "2001:2::10"

[[external]]
name = "peer"
ip = "198.18.0.100"
ip6 = "2001:2::100"

[[network]]
name = "fast"
subnet = "10.100.0.0/24"
ipv6 = true
subnet6 = "fd00:100::/64"

[[container]]
name = "sender"
networks = ["fast"]

[[container]]
name = "receiver"
networks = ["fast"]

[[check]]
name = "the path is up over IPv6"
kind = "ping"
from = "sender"
to = "receiver"
ipv6 = true
count = 1
expect = "ok"
TOML

# path server address
paths=("l2 receiver 10.100.0.3 fd00:100::3" "nat peer 198.18.0.100 2001:2::100")

for b in $backends; do
    out=$("$vswitch" up --backend "$b" "$scenario")
    id=$(awk '/is up/ {print $2}' <<<"$out")
    for ((r = 1; r <= repeat; r++)); do
        for p in "${paths[@]}"; do
            read -r path server a4 a6 <<<"$p"
            for fam in 4 6; do
                addr=$a4
                [[ $fam == 6 ]] && addr=$a6
                "$vswitch" exec --world "$id" "$server" -- iperf3 -s -1 -D >/dev/null
                for _ in $(seq 50); do
                    "$vswitch" exec --world "$id" "$server" -- ss -Hltn sport = :5201 | grep -q . && break
                    sleep 0.1
                done
                "$vswitch" exec --world "$id" sender -- \
                    iperf3 -"$fam" -c "$addr" -t "$secs" -J >"$work/run.json" || true
                python3 - "$work/run.json" "$b" "$path" "$fam" "$r" <<'PY' | tee -a "$work/rows"
import json, sys
try:
    bps = json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]
except Exception as e:
    sys.exit(f"ipv6-throughput: no result for {sys.argv[2:]}: {e}")
print(f"{sys.argv[2]}\t{sys.argv[3]}\tIPv{sys.argv[4]}\t{sys.argv[5]}\t{bps / 1e9:.2f}")
PY
            done
        done
    done
    "$vswitch" down "$id" >/dev/null
done

python3 - "$work/rows" <<'PY'
import sys, statistics
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    b, path, fam, _, g = line.rstrip("\n").split("\t")
    runs[(b, path, fam)].append(float(g))
print(f"\n{'backend':<10} {'path':<5} {'IPv4 Gbit/s':>12} {'IPv6 Gbit/s':>12} {'IPv6/IPv4':>10}")
for (b, path) in sorted({(b, p) for b, p, _ in runs}):
    v4 = statistics.median(runs[(b, path, "IPv4")])
    v6 = statistics.median(runs[(b, path, "IPv6")])
    print(f"{b:<10} {path:<5} {v4:>12.2f} {v6:>12.2f} {v6 / v4:>10.2f}")
PY
