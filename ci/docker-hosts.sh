#!/usr/bin/env bash
# Two local Docker "hosts" for testing `--docker-host` as if they were
# remote: namespaces dhost-1 and dhost-2 on a bridge in dhost-lan, with
# eth0 198.18.0.11/24 and 198.18.0.12/24, each running its own dockerd
# (socket /run/dhost-N/docker.sock). Not `vsw*`: leak checks count those.
#
#   ci/docker-hosts.sh start | stop
set -euo pipefail

start() {
  ip netns add dhost-lan
  ip -n dhost-lan link add lan type bridge
  ip -n dhost-lan link set lan up
  for i in 1 2; do
    ns=dhost-$i dir=/run/dhost-$i
    ip netns add $ns
    ip -n $ns link set lo up
    ip -n dhost-lan link add h$i type veth peer name eth0 netns $ns
    ip -n dhost-lan link set h$i master lan up
    ip -n $ns addr add 198.18.0.1$i/24 dev eth0
    ip -n $ns link set eth0 up
    mkdir -p $dir/data $dir/exec
    echo '{}' >$dir/daemon.json
    nsenter --net=/run/netns/$ns dockerd --config-file=$dir/daemon.json \
      --host=unix://$dir/docker.sock --data-root=$dir/data --exec-root=$dir/exec \
      --pidfile=$dir/dockerd.pid --storage-driver=vfs --bip=172.17.0.1/16 \
      --log-level=warn >$dir/dockerd.log 2>&1 </dev/null &
  done
  for i in 1 2; do
    for _ in $(seq 1 300); do
      curl -sf --unix-socket /run/dhost-$i/docker.sock http://d/_ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  echo "docker-hosts: h1=unix:///run/dhost-1/docker.sock,h2=unix:///run/dhost-2/docker.sock"
}

stop() {
  for i in 1 2; do
    dir=/run/dhost-$i
    if [ -f $dir/dockerd.pid ]; then
      pid=$(cat $dir/dockerd.pid)
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    grep " $dir/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l || true
    rm -rf $dir
    ip netns del dhost-$i 2>/dev/null || true
  done
  ip netns del dhost-lan 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
