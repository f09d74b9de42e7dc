#!/bin/bash
# tests/lab/down.sh - stop what up.sh / the lab tests started and delete the namespaces.
# 1. processes named in pidfiles ($LAB_WORK/run, $LAB_WORK/node*/run), but only while they still
#    live in one of OUR namespaces (guards against reused PIDs); 2. any PID left in rbprov/rbrack
#    (all started by the lab); 3. ip netns del. Safe to run repeatedly and when nothing is up.
source "$(cd "$(dirname "$0")" && pwd)/lab.env"
W="$LAB_WORK"

nsid() { stat -L -c %i "/run/netns/$1" 2>/dev/null; }
declare -A OURS=()
for ns in "$NS_PROV" "$NS_RACK"; do id=$(nsid "$ns") && [ -n "$id" ] && OURS[$id]=1; done
alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]; }
ours() { local id; id=$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null) && [ -n "${OURS[$id]:-}" ]; }
killpid() {  # killpid PID NAME : TERM, wait up to 3 s, then KILL
  local p="$1"
  [[ "$p" =~ ^[0-9]+$ ]] && alive "$p" || return 0
  kill "$p" 2>/dev/null
  for _ in $(seq 30); do alive "$p" || { echo "stopped $2 ($p)"; return 0; }; sleep 0.1; done
  kill -9 "$p" 2>/dev/null; echo "killed $2 ($p)"
}
for f in "$W"/node*/run/qemu.pid "$W"/run/tcpdump.pid "$W"/node*/run/ipmi_sim.pid "$W"/run/server.pid \
         "$W"/run/http.pid "$W"/run/dnsmasq.pid "$W"/run/radnsmasq.pid "$W"/run/*.pid "$W"/node*/run/*.pid; do
  [ -f "$f" ] || continue
  p=$(tr -dc '0-9' < "$f")
  if [ -n "$p" ] && alive "$p" && ours "$p"; then killpid "$p" "$(basename "$f" .pid)"; fi
  rm -f "$f"
done
for ns in "$NS_RACK" "$NS_PROV"; do
  if ip netns list | grep -qw "$ns"; then
    for p in $(ip netns pids "$ns" 2>/dev/null); do killpid "$p" "$(cat /proc/$p/comm 2>/dev/null) in $ns"; done
    ip netns del "$ns" && echo "deleted netns $ns"
  fi
done
rm -f "$W"/node*/run/console.fifo "$W"/node*/run/qmp.sock
exit 0
