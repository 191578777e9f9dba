#!/usr/bin/env bash
# Queries per second of the embedded DNS (127.0.0.11) under dnsperf, run
# inside a container, for vswitch with its kernel fast path, vswitch with
# everything answered in userspace (VSWITCH_DNS_FASTPATH=off), and Docker's
# own resolver (the docker backend, when its daemon is up: ci/docker-daemon.sh
# start). The variants alternate, REPEAT rounds, in one session; the table
# gives medians and ratios against Docker measured in the same run.
#
#   benches/dns-qps.sh                    # 3 rounds, 5 s per measurement
#   REPEAT=5 SECONDS_EACH=10 benches/dns-qps.sh
#   DNSPERF_ARGS="-c 10 -q 500" benches/dns-qps.sh   # DNSPERF_ARGS="": dnsperf defaults
#
# Below 16 outstanding queries (-q 10, say) dnsperf itself can stall up to
# 100 ms at a time, whatever the server (a race between its sending and
# receiving threads; the README's embedded DNS section quotes its source),
# so that mode's figures move from day to day.
#
# Needs root, dnsperf (apt-get install dnsperf) and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."

repeat="${REPEAT:-3}"
secs="${SECONDS_EACH:-5}"
args="${DNSPERF_ARGS--c 4 -q 200}"
vswitch=./target/release/vswitch
command -v dnsperf >/dev/null || { echo "dns-qps: dnsperf is not installed (apt-get install dnsperf)" >&2; exit 2; }
cargo build --release --quiet

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/dns-qps.toml" <<'TOML'
name = "dns qps"
[[network]]
name = "n"
subnet = "10.61.0.0/24"
[[container]]
name = "web"
networks = ["n"]
[[container]]
name = "client"
networks = ["n"]
TOML
echo "web A" >"$work/queries.txt"

variants=("fastpath:userspace:on" "userspace-only:userspace:off")
if [ -S /run/vswitch-docker.sock ]; then
    variants+=("docker:docker:on")
else
    echo "dns-qps: no docker daemon (ci/docker-daemon.sh start); measuring vswitch only" >&2
fi

# One measurement: bring a world up, dnsperf in `client`, tear it down.
measure() {
    local backend=$1 fast=$2 id
    id=vsw$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
    VSWITCH_RUN_ID=$id VSWITCH_DNS_FASTPATH=$fast \
        "$vswitch" up --backend "$backend" "$work/dns-qps.toml" >/dev/null
    # shellcheck disable=SC2086
    "$vswitch" exec --world "$id" client -- \
        dnsperf -s 127.0.0.11 -d "$work/queries.txt" -l "$secs" -Q 10000000 $args 2>&1 \
        | awk '/Queries per second/ {print $4}'
    "$vswitch" down "$id" >/dev/null
}

declare -A results
for ((r = 1; r <= repeat; r++)); do
    for v in "${variants[@]}"; do
        IFS=: read -r name backend fast <<<"$v"
        q=$(measure "$backend" "$fast")
        echo "round $r $name: $q q/s" >&2
        results[$name]+="$q "
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "dnsperf $args, ${secs} s each, median of $repeat"
printf '%-16s %12s %10s\n' variant "q/s" "× docker"
base=""
[ -n "${results[docker]:-}" ] && base=$(echo "${results[docker]}" | median)
for v in "${variants[@]}"; do
    name=${v%%:*}
    m=$(echo "${results[$name]}" | median)
    ratio="-"
    [ -n "$base" ] && ratio=$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2f", a / b}')
    printf '%-16s %12.0f %10s\n' "$name" "$m" "$ratio"
done
