#!/usr/bin/env bash
# Two local Docker "hosts" for testing `--docker-host` as if they were
# remote: namespaces dhost-1 and dhost-2 on a bridge in dhost-lan, with
# eth0 198.18.0.11/24 and 198.18.0.12/24, each running its own dockerd
# (socket /run/dhost-N/docker.sock). Not `vsw*`: leak checks count those.
#
# `start-tcp` also listens on TCP, bound to 127.0.0.1 in the starting
# namespace (control traffic only; nothing leaves the machine) by
# systemd-socket-activate and handed to dockerd as fd:// in its own
# namespace: dhost-1 plain at tcp://127.0.0.1:23751, dhost-2 TLS
# (--tlsverify) at tcp://127.0.0.1:23762 with a CA, server and client
# certificates made by openssl in /run/dhost-tls (ca.pem, cert.pem,
# key.pem; other-ca/ca.pem is a CA that signed nothing here).
#
#   ci/docker-hosts.sh start | start-tcp | stop
set -euo pipefail

TLS=/run/dhost-tls
PORT_1=23751 PORT_2=23762

certs() {
  mkdir -p $TLS/other-ca
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  local ca=(-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign)
  (
    cd $TLS
    openssl req -x509 "${ec[@]}" -keyout ca-key.pem -out ca.pem -days 1 -subj /CN=dhost-ca "${ca[@]}"
    openssl req -x509 "${ec[@]}" -keyout other-ca/ca-key.pem -out other-ca/ca.pem -days 1 -subj /CN=dhost-other-ca "${ca[@]}"
    openssl req "${ec[@]}" -keyout server-key.pem -out server.csr -subj /CN=127.0.0.1
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 1 -extfile server.ext
    openssl req "${ec[@]}" -keyout key.pem -out client.csr -subj /CN=dhost-client
    printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 1 -extfile client.ext
  ) >$TLS/openssl.log 2>&1
}

start() {
  local tcp=${1:-}
  if [ -n "$tcp" ]; then
    for t in openssl systemd-socket-activate curl; do
      command -v $t >/dev/null || { echo "docker-hosts: $t is missing" >&2; exit 3; }
    done
    certs
  fi
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
    local args=(--config-file=$dir/daemon.json
      --host=unix://$dir/docker.sock --data-root=$dir/data --exec-root=$dir/exec
      --pidfile=$dir/dockerd.pid --storage-driver=vfs --bip=172.17.0.1/16
      --log-level=warn)
    if [ -z "$tcp" ]; then
      nsenter --net=/run/netns/$ns dockerd "${args[@]}" >$dir/dockerd.log 2>&1 </dev/null &
    else
      local port=PORT_$i
      [ $i = 2 ] && args+=(--tlsverify --tlscacert=$TLS/ca.pem
        --tlscert=$TLS/server-cert.pem --tlskey=$TLS/server-key.pem)
      # The listener is made here, in the starting namespace; dockerd
      # (the same PID, after two execs) serves it as fd:// from $ns. It
      # starts on the first connection (the readiness loop below).
      systemd-socket-activate -l 127.0.0.1:${!port} "$(command -v nsenter)" \
        --net=/run/netns/$ns "$(command -v dockerd)" "${args[@]}" --host=fd:// \
        >$dir/dockerd.log 2>&1 </dev/null &
    fi
    echo $! >$dir/start.pid
  done
  for i in 1 2; do
    for _ in $(seq 1 300); do
      curl -sf --unix-socket /run/dhost-$i/docker.sock http://d/_ping >/dev/null 2>&1 && break
      [ -n "$tcp" ] && [ $i = 1 ] && curl -sf -m 1 http://127.0.0.1:$PORT_1/_ping >/dev/null 2>&1 || true
      [ -n "$tcp" ] && [ $i = 2 ] && curl -sf -m 1 --cacert $TLS/ca.pem --cert $TLS/cert.pem \
        --key $TLS/key.pem https://127.0.0.1:$PORT_2/_ping >/dev/null 2>&1 || true
      sleep 0.1
    done
  done
  if [ -n "$tcp" ]; then
    curl -sf http://127.0.0.1:$PORT_1/_ping >/dev/null
    curl -sf --cacert $TLS/ca.pem --cert $TLS/cert.pem --key $TLS/key.pem \
      https://127.0.0.1:$PORT_2/_ping >/dev/null
    echo "docker-hosts: h1=tcp://127.0.0.1:$PORT_1 (plain), h2=tcp://127.0.0.1:$PORT_2 (--tlsverify, $TLS)"
  else
    echo "docker-hosts: h1=unix:///run/dhost-1/docker.sock,h2=unix:///run/dhost-2/docker.sock"
  fi
}

stop() {
  for i in 1 2; do
    dir=/run/dhost-$i
    # dockerd.pid: the daemon; start.pid: the process started (the same
    # PID once it runs, or a socket activator still waiting).
    for f in dockerd.pid start.pid; do
      [ -f $dir/$f ] || continue
      pid=$(cat $dir/$f)
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    done
    grep " $dir/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l || true
    rm -rf $dir
    ip netns del dhost-$i 2>/dev/null || true
  done
  ip netns del dhost-lan 2>/dev/null || true
  rm -rf $TLS
}

case "${1:-}" in
  start) start ;;
  start-tcp) start tcp ;;
  stop) stop ;;
  *) echo "usage: $0 start|start-tcp|stop" >&2; exit 2 ;;
esac
