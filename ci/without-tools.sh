#!/usr/bin/env bash
# Runs a command with the suite's optional tools hidden from PATH, as on a
# fresh machine that has only the Rust toolchain and a base system:
#
#   ci/without-tools.sh cargo test --workspace
#
# PATH becomes one directory of links to every program on the current PATH
# except the hidden ones (first match wins, as PATH lookup does). The
# project's Docker daemon is made unreachable too (VSWITCH_DOCKER_SOCKET
# points nowhere), as on a machine without docker.io.
# HIDE overrides the list.
set -euo pipefail

hide=${HIDE:-"iperf3 dig tshark tcpdump nft dockerd docker dnsperf ovs-vswitchd"}
shadow=$(mktemp -d /tmp/vswitch-path.XXXXXX)
trap 'rm -rf "$shadow"' EXIT

IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    name=${f##*/}
    [ -x "$f" ] && [ ! -d "$f" ] || continue
    case " $hide " in *" $name "*) continue ;; esac
    [ -e "$shadow/$name" ] || ln -s "$f" "$shadow/$name"
  done
done

echo "without-tools: hidden from PATH: $hide" >&2
PATH=$shadow VSWITCH_DOCKER_SOCKET=/nonexistent/vswitch-docker.sock "$@"
