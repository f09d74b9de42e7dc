#!/bin/bash
# tests/lab/bmc-chassis.sh - ipmi_sim `chassis_control` program of node $LAB_NODE (runs in netns
# rbrack; adapted from the reference rig). ipmi_sim calls it synchronously (popen) as:
#   bmc-chassis.sh <mc> get power|boot ...        -> prints "power:0|1", "boot:<dev>"
#   bmc-chassis.sh <mc> set power 0|1  reset 1  boot pxe|default|none|cdrom|bios
#                             shutdown 1  identify "<interval> <force>"
# ipmi_sim blocks while this runs (and ipmitool retransmits after ~1 s), so every action returns
# well under 1 s, never asks ipmi_sim anything (deadlock), and starts QEMU detached.
source "$(cd "$(dirname "$0")" && pwd)/lab.env"
W="$VM_DIR"
PIDF="$W/run/qemu.pid"
BOOTF="$W/state/bmc-bootdev"
LOG="$W/logs/bmc-chassis.log"
log() { echo "$EPOCHREALTIME $*" >> "$LOG"; }

alive() {  # alive PID: exists and is not a zombie (PID 1 of the lab host may reap late)
  local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]
}
running() { local p; p=$(cat "$PIDF" 2>/dev/null) && [ -n "$p" ] && alive "$p"; }
qmp() {  # qmp '{"execute":"system_reset"}'
  timeout 2 python3 - "$W/run/qmp.sock" "$1" <<'PY' >>"$LOG" 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(1); s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()                                   # greeting
f.write('{"execute":"qmp_capabilities"}\n'); f.flush(); f.readline()
f.write(sys.argv[2] + "\n"); f.flush(); print("qmp:", f.readline().strip())
PY
}

mc="$1"; op="$2"; shift 2
log "$op $*"
case "$op" in
  get)
    for parm in "$@"; do
      case "$parm" in
        power) if running; then echo "power:1"; else echo "power:0"; fi ;;
        boot)  echo "boot:$(cat "$BOOTF" 2>/dev/null || echo default)" ;;
        *) echo "Invalid parameter: $parm"; exit 1 ;;
      esac
    done ;;
  set)
    while [ $# -gt 0 ]; do
      parm="$1"; val="$2"; shift 2 || { echo "No value for $parm"; exit 1; }
      case "$parm" in
        power)
          if [ "$val" = 1 ]; then
            if running; then log "power on: already on"; else
              rm -f "$PIDF"
              setsid "$LAB/vm-start.sh" </dev/null >/dev/null 2>&1 &
              for _ in $(seq 40); do [ -s "$PIDF" ] && break; sleep 0.05; done
              log "power on: qemu pid $(cat "$PIDF" 2>/dev/null)"
            fi
          else
            if running; then
              p=$(cat "$PIDF"); kill -TERM "$p"
              for _ in $(seq 40); do alive "$p" || break; sleep 0.025; done
              alive "$p" && kill -KILL "$p"
              log "power off: qemu pid $p gone"
            fi
            rm -f "$PIDF"
          fi ;;
        reset)    running && qmp '{"execute":"system_reset"}' ;;
        shutdown) running && qmp '{"execute":"system_powerdown"}' ;;   # ACPI; the lab initrd ignores it
        boot)     echo "$val" > "$BOOTF"; log "boot device -> $val" ;;
        identify) : ;;
        *) echo "Invalid parameter: $parm"; exit 1 ;;
      esac
    done ;;
  *) echo "Invalid operation: $op"; exit 1 ;;
esac
exit 0
