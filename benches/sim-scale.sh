#!/usr/bin/env bash
# The sim backend's speed goals (issue 21): a world of N containers on one
# bridge network, each serving tcp:80, built, checked (a ping between two
# containers, a TCP echo from the second to the last, a ping from the
# machine to the middle one) and torn down by `vswitch run --backend sim`
# in one process, for each size. Prints the process's wall time end to
# end, set-up and teardown (from the run's JSON report), the checks' wall
# time, and the peak resident set size of the process (GNU time's maximum
# RSS), medians over REPEAT runs. Every run must pass all its checks.
# No root needed.
#
#   benches/sim-scale.sh                      # 100 1000 10000, 3 runs each
#   SIZES="100 1000" REPEAT=5 benches/sim-scale.sh
#   VSWITCH=./target/debug/vswitch benches/sim-scale.sh
#
# Builds the release binary first unless VSWITCH names one. The figures
# measure this machine (wall time and memory); what the checks observe is
# virtual time and the same on any machine.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes="${SIZES:-100 1000 10000}"
repeat="${REPEAT:-3}"
vswitch="${VSWITCH:-./target/release/vswitch}"
if [[ -z "${VSWITCH:-}" ]]; then
    cargo build --release --quiet -p vswitch
fi
if [[ ! -x /usr/bin/time ]]; then
    echo "sim-scale: GNU time (/usr/bin/time) is missing: it measures the peak RSS" >&2
    exit 3
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# scenario N: N containers c0 … c(N-1) on one /16.
scenario() {
    local n=$1 i
    echo "name = \"sim scale: $n containers on one bridge\""
    echo 'tags = ["bench", "scale", "sim"]'
    printf '[[network]]\nname = "big"\nsubnet = "10.128.0.0/16"\n'
    for ((i = 0; i < n; i++)); do
        printf '[[container]]\nname = "c%d"\nnetworks = ["big"]\nserve = ["tcp:80"]\n' "$i"
    done
    printf '[[check]]\nkind = "ping"\nfrom = "c0"\nto = "c1"\nexpect = "ok"\n'
    printf '[[check]]\nkind = "tcp"\nfrom = "c1"\nto = "c%d:80"\nexpect = "ok"\n' $((n - 1))
    printf '[[check]]\nkind = "ping"\nfrom = "host"\nto = "c%d"\nexpect = "ok"\n' $((n / 2))
}

results="$work/results.tsv"
: >"$results"
for n in $sizes; do
    scenario "$n" >"$work/s$n.toml"
done
for ((r = 1; r <= repeat; r++)); do
    for n in $sizes; do
        echo "sim-scale: round $r, $n containers" >&2
        code=0
        t0=$(date +%s%N)
        /usr/bin/time -f '%M' -o "$work/time" \
            "$vswitch" run -q --backend sim --json "$work/r.json" "$work/s$n.toml" \
            >/dev/null 2>"$work/err" || code=$?
        t1=$(date +%s%N)
        if [[ $code -ne 0 || ! -s $work/r.json ]]; then
            echo "sim-scale: $n containers: exit $code: $(tail -3 "$work/err")" >&2
            exit 1
        fi
        wall=$(((t1 - t0) / 1000000))
        read -r rss_kb <"$work/time"
        read -r setup teardown checks passed total virtual < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
checks = sum(c.get("duration_ms", 0) for c in r["checks"])
virtual = r.get("metrics", {}).get("sim", {}).get("virtual_ms", 0)
print(r["setup_ms"], r["teardown_ms"], checks, r["passed"], len(r["checks"]), virtual)' "$work/r.json")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$wall" "$setup" "$teardown" "$checks" \
            "$rss_kb" "$passed" "$total" "$virtual" >>"$results"
        rm -f "$work/r.json"
    done
done

python3 - "$results" <<'PY'
import sys, statistics
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    n, wall, setup, teardown, checks, rss, passed, total, virtual = line.split("\t")
    rows[int(n)].append((int(wall) / 1000, int(setup), int(teardown), int(checks), int(rss),
                         int(passed), int(total), int(virtual)))
print(f"{'containers':>10} {'runs':>4} {'wall s':>7} {'set-up ms':>9} {'checks ms':>9}"
      f" {'teardown ms':>11} {'peak RSS MB':>11} {'kB/ctr':>7} {'checks':>6} {'virtual ms':>10}")
for n, rs in sorted(rows.items()):
    med = lambda i: statistics.median(r[i] for r in rs)
    checks = f"{min(r[5] for r in rs)}/{max(r[6] for r in rs)}"
    print(f"{n:>10} {len(rs):>4} {med(0):>7.3f} {med(1):>9.0f} {med(3):>9.0f} {med(2):>11.0f}"
          f" {med(4)/1024:>11.0f} {med(4)/n:>7.1f} {checks:>6} {med(7):>10.0f}")
print("(medians; wall = the whole `vswitch run` process: parse, set-up, checks, teardown, exit;"
      " peak RSS of that process; virtual ms = the world's own clock)")
PY
