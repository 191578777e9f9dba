#!/usr/bin/env bash
# How world size grows set-up and teardown: N containers spread over 3
# bridge networks, built, checked (a ping between the first and last
# container of each network, one isolation
# check between two networks) and torn down with `vswitch run`, for each
# size and backend, alternating backends within each round so that drift on
# the machine hits them alike. Prints wall time end to end, set-up and
# teardown (from the run's JSON report), each per container, and what the
# run left behind (namespaces, /etc/netns directories, run records and
# links in the starting namespace named with its run id: must be 0).
#
#   benches/scale.sh                          # 100 300 1000, userspace and kernel (+ docker when up)
#   SIZES="100 300" REPEAT=3 benches/scale.sh
#   BACKENDS="userspace kernel docker" DOCKER_MAX=300 benches/scale.sh
#   VSWITCH=./target/debug/vswitch benches/scale.sh
#
# The docker backend is measured when its daemon answers (ci/docker-daemon.sh
# start), for sizes up to DOCKER_MAX (default 300: docker takes minutes at
# 1000); skipped sizes are said so. Needs root and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes="${SIZES:-100 300 1000}"
repeat="${REPEAT:-1}"
docker_max="${DOCKER_MAX:-300}"
vswitch="${VSWITCH:-./target/release/vswitch}"
if [[ -z "${VSWITCH:-}" ]]; then
    cargo build --release --quiet -p vswitch
fi
backends="${BACKENDS:-userspace kernel}"
if [[ -z "${BACKENDS:-}" ]] && bash ci/docker-daemon.sh status >/dev/null 2>&1; then
    backends="$backends docker"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# scenario N: N containers c0 … c(N-1), container i on network i mod 3.
scenario() {
    local n=$1 k i
    echo "name = \"scale: $n containers on 3 networks\""
    echo 'tags = ["bench", "scale"]'
    for k in 0 1 2; do
        printf '[[network]]\nname = "net%d"\nsubnet = "10.%d.0.0/16"\n' "$k" $((200 + k))
    done
    for ((i = 0; i < n; i++)); do
        printf '[[container]]\nname = "c%d"\nnetworks = ["net%d"]\n' "$i" $((i % 3))
    done
    for k in 0 1 2; do
        printf '[[check]]\nname = "BR-7 net%d"\nkind = "ping"\nfrom = "c%d"\nto = "c%d"\ncount = 1\nexpect = "ok"\n' \
            "$k" "$k" $((n - 1 - (n - 1 - k) % 3))
    done
    printf '[[check]]\nname = "BR-8 isolation"\nkind = "ping"\nfrom = "c0"\nto = "c1"\ncount = 1\ntimeout_ms = 300\nexpect = "fail"\n'
}

# leftovers RUN_ID: everything of that run still there.
leftovers() {
    local id=$1 n=0
    n=$((n + $(find /run/netns -maxdepth 1 -name "$id-*" 2>/dev/null | wc -l)))
    n=$((n + $(find /etc/netns -maxdepth 1 -name "$id-*" 2>/dev/null | wc -l)))
    n=$((n + $(find /run/vswitch/runs -maxdepth 1 -name "$id*" 2>/dev/null | wc -l)))
    n=$((n + $(ip -o link show 2>/dev/null | grep -c "$id" || true)))
    echo "$n"
}

results="$work/results.tsv"
: >"$results"
for n in $sizes; do
    scenario "$n" >"$work/s$n.toml"
done
for ((r = 1; r <= repeat; r++)); do
    for n in $sizes; do
        for b in $backends; do
            if [[ $b == docker && $n -gt $docker_max ]]; then
                echo "scale: docker skipped at $n containers (DOCKER_MAX=$docker_max)" >&2
                continue
            fi
            echo "scale: round $r, $n containers, $b" >&2
            t0=$(date +%s%N)
            code=0
            "$vswitch" run -q --backend "$b" --json "$work/r.json" "$work/s$n.toml" >/dev/null 2>"$work/err" || code=$?
            t1=$(date +%s%N)
            if [[ ! -s $work/r.json ]]; then
                echo "scale: $b at $n: no report (exit $code): $(tail -3 "$work/err")" >&2
                continue
            fi
            read -r id setup teardown passed failed < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["run_id"], r["setup_ms"], r["teardown_ms"], r["passed"], r["failed"])' "$work/r.json")
            left=$(leftovers "$id")
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$b" $(((t1 - t0) / 1000000)) "$setup" "$teardown" \
                "$passed" "$failed" "$left" >>"$results"
            rm -f "$work/r.json"
        done
    done
done

python3 - "$results" <<'PY'
import sys, statistics
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    n, b, wall, setup, teardown, passed, failed, left = line.split("\t")
    rows[(int(n), b)].append((int(wall), int(setup), int(teardown), int(passed), int(failed), int(left)))
print(f"{'containers':>10} {'backend':<10} {'runs':>4} {'wall s':>7} {'set-up s':>8} {'teardown s':>10}"
      f" {'ms/ctr':>7} {'set-up ms/ctr':>13} {'teardown ms/ctr':>15} {'checks':>7} {'leftovers':>9}")
for (n, b), rs in sorted(rows.items()):
    med = lambda i: statistics.median(r[i] for r in rs)
    checks = f"{min(r[3] for r in rs)}/{max(r[3] + r[4] for r in rs)}"
    print(f"{n:>10} {b:<10} {len(rs):>4} {med(0)/1000:>7.2f} {med(1)/1000:>8.2f} {med(2)/1000:>10.2f}"
          f" {med(0)/n:>7.2f} {med(1)/n:>13.2f} {med(2)/n:>15.2f} {checks:>7} {max(r[5] for r in rs):>9}")
print("(medians; wall = the whole `vswitch run` process: set-up, checks, teardown, exit)")
PY
