#!/usr/bin/env bash
# How world size grows set-up and teardown: N containers spread over 3
# bridge networks, built, checked (a ping between the first and last
# container of each network, one isolation
# check between two networks) and torn down with `vswitch run`, for each
# size and backend, alternating backends within each round so that drift on
# the machine hits them alike. Prints wall time end to end, set-up and
# teardown (from the run's JSON report), each per container, the time the
# machine stays busy after the process exits (settle: the kernel deletes
# namespaces in a work queue, after `ip netns del` or the last handle has
# gone; the next run waits for it, so that no run pays for the one before),
# and what the run left behind (namespaces, /etc/netns directories, run records and
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

# settle: waits until both CPUs are idle (under 10 % busy, steal aside, in
# two 100 ms windows running) or 30 s passed; prints the milliseconds it
# waited before the idle windows.
settle() {
    local t0 quiet=0 prev cur busy total
    t0=$(date +%s%N)
    read -r -a prev < <(head -1 /proc/stat)
    while ((quiet < 2)); do
        sleep 0.1
        read -r -a cur < <(head -1 /proc/stat)
        busy=$(((cur[1] - prev[1]) + (cur[2] - prev[2]) + (cur[3] - prev[3]) + (cur[6] - prev[6]) + (cur[7] - prev[7])))
        total=$((busy + (cur[4] - prev[4]) + (cur[5] - prev[5])))
        prev=("${cur[@]}")
        if ((busy * 10 < total)); then
            quiet=$((quiet + 1))
        else
            quiet=0
        fi
        if (($(date +%s%N) - t0 > 30000000000)); then
            echo "scale: the machine did not settle within 30 s" >&2
            break
        fi
    done
    echo $((($(date +%s%N) - t0) / 1000000 - 100 * quiet))
}

results="$work/results.tsv"
: >"$results"
for n in $sizes; do
    scenario "$n" >"$work/s$n.toml"
done
# measure N BACKEND [RECORD]: one run, appended to the results when RECORD.
measure() {
    local n=$1 b=$2 record=${3:-}
    local t0 t1 code=0 after id setup teardown passed failed left
    t0=$(date +%s%N)
    "$vswitch" run -q --backend "$b" --json "$work/r.json" "$work/s$n.toml" >/dev/null 2>"$work/err" || code=$?
    t1=$(date +%s%N)
    after=$(settle)
    if [[ ! -s $work/r.json ]]; then
        echo "scale: $b at $n: no report (exit $code): $(tail -3 "$work/err")" >&2
        return
    fi
    read -r id setup teardown passed failed < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["run_id"], r["setup_ms"], r["teardown_ms"], r["passed"], r["failed"])' "$work/r.json")
    left=$(leftovers "$id")
    rm -f "$work/r.json"
    if [[ -n $record ]]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$b" $(((t1 - t0) / 1000000)) "$setup" "$teardown" \
            "$after" "$passed" "$failed" "$left" >>"$results"
    elif ((left > 0)); then
        echo "scale: the warm-up ($b at $n) left $left things behind" >&2
    fi
}

# Each size on its own, after a warm-up run that is not counted: a world
# built right after a smaller one finds the kernel's caches cold and takes
# longer, so the first backend of a size would otherwise pay for it. The
# backends' order turns each round. Every run waits for the one before to
# settle (in `measure`); the first for whatever ran before the script.
read -r -a order <<<"$backends"
settle >/dev/null
for n in $sizes; do
    first=${order[0]}
    if [[ $first != docker || $n -le $docker_max ]]; then
        echo "scale: warm-up, $n containers, $first" >&2
        measure "$n" "$first"
    fi
    for ((r = 1; r <= repeat; r++)); do
        for ((k = 0; k < ${#order[@]}; k++)); do
            b=${order[(k + r - 1) % ${#order[@]}]}
            if [[ $b == docker && $n -gt $docker_max ]]; then
                echo "scale: docker skipped at $n containers (DOCKER_MAX=$docker_max)" >&2
                continue
            fi
            echo "scale: round $r, $n containers, $b" >&2
            measure "$n" "$b" record
        done
    done
done

python3 - "$results" <<'PY'
import sys, statistics
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    n, b, wall, setup, teardown, after, passed, failed, left = line.split("\t")
    rows[(int(n), b)].append((int(wall), int(setup), int(teardown), int(after), int(passed), int(failed), int(left)))
print(f"{'containers':>10} {'backend':<10} {'runs':>4} {'wall s':>7} {'set-up s':>8} {'teardown s':>10}"
      f" {'settle s':>8} {'ms/ctr':>7} {'set-up ms/ctr':>13} {'teardown ms/ctr':>15} {'checks':>7} {'leftovers':>9}")
for (n, b), rs in sorted(rows.items()):
    med = lambda i: statistics.median(r[i] for r in rs)
    checks = f"{min(r[4] for r in rs)}/{max(r[4] + r[5] for r in rs)}"
    print(f"{n:>10} {b:<10} {len(rs):>4} {med(0)/1000:>7.2f} {med(1)/1000:>8.2f} {med(2)/1000:>10.2f}"
          f" {med(3)/1000:>8.2f} {med(0)/n:>7.2f} {med(1)/n:>13.2f} {med(2)/n:>15.2f} {checks:>7} {max(r[6] for r in rs):>9}")
# Growth: a least-squares line through each backend's medians, wall
# against containers (the fixed part is the process, the programs and the
# checks' waits, 0.3 s of them for the isolation check's timeout).
for b in sorted({b for (_, b) in rows}):
    pts = [(n, statistics.median(r[0] for r in rs)) for (n, bb), rs in sorted(rows.items()) if bb == b]
    if len(pts) < 2:
        continue
    mx = statistics.mean(n for n, _ in pts)
    my = statistics.mean(w for _, w in pts)
    slope = sum((n - mx) * (w - my) for n, w in pts) / sum((n - mx) ** 2 for n, _ in pts)
    print(f"{b}: wall ≈ {(my - slope * mx)/1000:.2f} s + {slope:.2f} ms per container ({len(pts)} sizes)")
print("(medians; wall = the whole `vswitch run` process: set-up, checks, teardown, exit;")
print(" settle = how long the machine stayed busy after it, the kernel deleting namespaces;")
print(" each run starts on an idle machine)")
PY
