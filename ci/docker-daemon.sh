#!/usr/bin/env bash
# The project's own Docker daemon: the oracle behind `vswitch run --backend docker`.
#
#   ci/docker-daemon.sh start    start it (idempotent), wait until the API answers
#   ci/docker-daemon.sh stop     stop it and remove its network namespace
#   ci/docker-daemon.sh status   exit 0 when the API answers
#
# Nothing of it touches the namespace this script runs in: dockerd lives in
# its own network namespace `oracle-dockerd` (not `vsw*`: leak checks count
# those), so its bridges, iptables rules, routes and forwarding sysctls stay
# there. Only the network namespace is entered (nsenter --net, not
# `ip netns exec`): the latter remounts /sys, which hides the cgroup tree
# dockerd needs; dockerd reads links and sysctls over netlink and
# /proc/sys/net, which follow its network namespace.
#
# Its own data root, exec root, pid file and socket; the vfs storage driver
# (no overlayfs needed); the default bridge is 172.17.0.1/16 (BR-21); the
# userland proxy is on (Docker's default, PUB-7); IPv6 is on, with
# ip6tables (20.10 needs --experimental for it) and the default bridge's
# IPv6 from fd00:dead:beef::/48 (V6-4, V6-6; seed S000's daemon.json);
# no registry is ever used
# (vswitch imports its busybox image from a tar). resolv.conf of the daemon
# is irrelevant: vswitch gives every container explicit DNS servers.
set -euo pipefail

NS=oracle-dockerd
SOCK=/run/vswitch-docker.sock
DATA=/var/lib/vswitch-docker
EXEC=/run/vswitch-docker
PIDFILE=/run/vswitch-docker.pid
LOG=/var/log/vswitch-docker.log
CONF=/run/vswitch-docker.json

ping_api() {
  [ -S "$SOCK" ] && curl -sf --max-time 2 --unix-socket "$SOCK" http://docker/_ping >/dev/null 2>&1
}

start() {
  if ping_api; then
    echo "docker-daemon: already running at $SOCK"
    return 0
  fi
  command -v dockerd >/dev/null || {
    echo "docker-daemon: dockerd not found: apt-get install -y docker.io busybox-static" >&2
    exit 1
  }
  if ! ip netns list | grep -qx "$NS\( .*\)\?"; then
    ip netns add "$NS"
  fi
  ip -n "$NS" link set lo up
  # Addresses usable at once (no IPv6 duplicate address detection): the
  # bridges' gateway6 would stay tentative for a second after each
  # network is created. vswitch sets the same before every IPv6 run.
  nsenter --net="/run/netns/$NS" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  mkdir -p "$DATA" "$EXEC"
  # No daemon.json of the machine applies: an empty configuration of our own.
  echo '{}' >"$CONF"
  rm -f "$SOCK"
  nsenter --net="/run/netns/$NS" \
    dockerd \
    --config-file "$CONF" \
    -H "unix://$SOCK" \
    --data-root "$DATA" \
    --exec-root "$EXEC" \
    --pidfile "$PIDFILE" \
    --storage-driver vfs \
    --iptables=true \
    --bip 172.17.0.1/16 \
    --userland-proxy=true \
    --ipv6 \
    --fixed-cidr-v6 fd00:dead:beef::/48 \
    --experimental \
    --ip6tables \
    --log-level warn \
    >>"$LOG" 2>&1 </dev/null &
  for _ in $(seq 1 300); do
    if ping_api; then
      echo "docker-daemon: up at $SOCK (netns $NS, pid $(cat "$PIDFILE"), log $LOG)"
      return 0
    fi
    sleep 0.2
  done
  echo "docker-daemon: no answer at $SOCK after 60 s; last log lines:" >&2
  tail -n 30 "$LOG" >&2 || true
  exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      if kill -0 "$pid" 2>/dev/null; then
        echo "docker-daemon: pid $pid did not stop in 30 s, killing it" >&2
        kill -KILL "$pid" || true
      fi
    fi
    rm -f "$PIDFILE"
  fi
  rm -f "$SOCK"
  if ip netns list | grep -qx "$NS\( .*\)\?"; then
    ip netns del "$NS"
  fi
  echo "docker-daemon: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) ping_api ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
