#!/usr/bin/env bash
# Leak check: fails (naming what it found) when anything a run created is
# still there: namespaces, Docker objects labelled vswitch.run, run daemons,
# their directories and cgroups, --docker-host records. `.ci/run` calls it
# last; run it by hand after a test session too.
set -euo pipefail

left=$(ip netns list | grep -c '^vsw' || true)
if [ "$left" -ne 0 ]; then
  echo "leaked namespaces:"; ip netns list | grep '^vsw'
  exit 1
fi
# Nor anything in the Docker daemon (runs label what they create).
# (`|| true`: grep finding nothing must not fail the pipeline under pipefail.)
left=$(curl -sf --unix-socket /run/vswitch-docker.sock \
  'http://docker/containers/json?all=1&filters=%7B%22label%22%3A%5B%22vswitch.run%22%5D%7D' \
  | { grep -o '"Id"' || true; } | wc -l)
left_nets=$(curl -sf --unix-socket /run/vswitch-docker.sock \
  'http://docker/networks?filters=%7B%22label%22%3A%5B%22vswitch.run%22%5D%7D' \
  | { grep -o '"Id"' || true; } | wc -l)
if [ "$left" -ne 0 ] || [ "$left_nets" -ne 0 ]; then
  echo "leaked docker objects: $left containers, $left_nets networks"
  exit 1
fi
# Nor any daemon a run started (one dockerd per machine), its directory,
# cgroups, or a --docker-host record.
# (find and ls fail when nothing is there: that is the passing case.)
left=$( (find /run/vswitch/dockerd /run/vswitch/docker-hosts -mindepth 1 -maxdepth 1 2>/dev/null || true; ls -d /sys/fs/cgroup/vswitch-vsw* /sys/fs/cgroup/*/vswitch-vsw* 2>/dev/null || true) | wc -l)
if [ "$left" -ne 0 ] || pgrep -f /run/vswitch/dockerd/ >/dev/null; then
  echo "leaked run daemons:"; ls /run/vswitch/dockerd /run/vswitch/docker-hosts 2>/dev/null; pgrep -af /run/vswitch/dockerd/ || true
  exit 1
fi
