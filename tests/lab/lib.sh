# tests/lab/lib.sh - helpers for lab test scripts:  source "$REPO/tests/lab/lib.sh"
# NODE = index 0..LAB_NODES-1 or name node5<i>. Nothing here waits without a bound.
#   lab_up [bios|uefi] / lab_down      up.sh / down.sh;  lab_vm_env: load the running lab's settings
#   lab_inprov CMD...                  run CMD in the provisioner namespace (rbprov)
#   lab_ipmi NODE ARGS...              ipmitool -I lanplus -C 3 ... against NODE's BMC, from rbprov
#   lab_bootdev NODE DEV               chassis bootdev DEV, read back (ipmitool exits 0 on rejects)
#   lab_power_state NODE               prints on|off
#   lab_port_open NODE PORT            one TCP connect attempt (0.5 s) from rbprov
#   lab_wait_port NODE PORT TIMEOUT    bounded poll; prints seconds since the mark (see lab_mark)
#   lab_wait_ssh NODE TIMEOUT          = lab_wait_port NODE 22 TIMEOUT
#   lab_ssh NODE CMD...                ssh root@NODE with the lab key, from rbprov (BatchMode, 5 s connect)
#   lab_console NODE                   path of NODE's serial console log (one epoch stamp per line)
#   lab_node_dir NODE / lab_node_ip NODE / lab_node_mac NODE / lab_node_name NODE
#   lab_wait_grep FILE REGEX TIMEOUT   bounded poll until FILE has a line matching REGEX
#   lab_wait_gone PID TIMEOUT          bounded poll until PID is gone or a zombie
#   lab_config CONF DATA [SED...]      a copy of the repository's rackboot config in CONF with the
#                                      lab's absolute paths, data_dir DATA (emptied), extra sed -e's
#   time: lab_now (epoch.ns), lab_mark [VAR] (sets LAB_T0 or VAR to now), lab_since T,
#         lab_dt A B (B-A in s, 2 decimals)
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lab.env"
# settings of the running lab (VM_FW, VM_DISK, LAB_NODES ...) as up.sh recorded them; not loaded
# automatically (a stale file would override the caller's environment)
lab_vm_env() { [ -f "$LAB_WORK/run/vm.env" ] && source "$LAB_WORK/run/vm.env"; }

lab_config() {
  local conf="$1" data="$2"; shift 2
  local extra=(); for e in "$@"; do extra+=(-e "$e"); done
  rm -rf "$conf"; mkdir -p "$conf/tests/lab"
  cp -r "$REPO/profiles" "$REPO/kickstarts" "$REPO/systems.toml" "$conf/"
  cp "$LAB/bmc-password" "$conf/tests/lab/"
  sed -e "s#^boot_dir = .*#boot_dir = \"$LAB_BOOT\"#" \
      -e "s#^firmware_dir = .*#firmware_dir = \"$LAB_FIRMWARE\"#" \
      -e "s#^data_dir = .*#data_dir = \"$data\"#" \
      -e "s#^ssh_key = .*#ssh_key = \"$LAB_SSH_KEY\"#" \
      "${extra[@]}" "$REPO/rackboot.toml" > "$conf/rackboot.toml"
  rm -rf "$data"
}

lab_now()   { date +%s.%N; }
lab_dt()    { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
lab_since() { lab_dt "$1" "$(lab_now)"; }
lab_mark()  { printf -v "${1:-LAB_T0}" '%s' "$(lab_now)"; }

_lab_idx() {  # NODE -> index
  case "$1" in
    node5[0-9]) echo $(( ${1#node5} ));;
    [0-9]) echo "$1";;
    *) echo "lab: bad node '$1' (0..$((LAB_MAX_NODES-1)) or node5<i>)" >&2; return 1;;
  esac
}
lab_node_dir()  ( lab_node "$(_lab_idx "$1")" && echo "$VM_DIR" )
lab_node_ip()   ( lab_node "$(_lab_idx "$1")" && echo "$VM_IP" )
lab_node_mac()  ( lab_node "$(_lab_idx "$1")" && echo "$VM_MAC" )
lab_node_name() ( lab_node "$(_lab_idx "$1")" && echo "$VM_NAME" )
lab_console()   { echo "$(lab_node_dir "$1")/logs/console.log"; }

lab_up()   { "$LAB/up.sh" "$@"; }
lab_down() { "$LAB/down.sh"; }
lab_inprov() { ip netns exec "$NS_PROV" "$@"; }
lab_ipmi() ( lab_node "$(_lab_idx "$1")" || exit 2; shift; lab_inprov "${IPMITOOL[@]}" "$@" )
lab_power_state() { local s; s=$(lab_ipmi "$1" chassis power status 2>&1); [[ "$s" == *" on"* ]] && echo on || echo off; }
lab_bootdev() {
  lab_ipmi "$1" chassis bootdev "$2" >/dev/null || return 1
  local want; case "$2" in pxe) want=PXE;; disk) want=Hard-Drive;; *) want="";; esac
  [ -z "$want" ] || lab_ipmi "$1" chassis bootparam get 5 2>&1 | grep -i 'Boot Device Selector' | grep -q "$want"
}
lab_port_open() ( ip=$(lab_node_ip "$1") || exit 2
  lab_inprov timeout 0.5 bash -c "exec 3<>/dev/tcp/$ip/$2" 2>/dev/null )
lab_wait_port() {  # lab_wait_port NODE PORT TIMEOUT : prints seconds since ${LAB_T0:-call}
  local start="${LAB_T0:-$(lab_now)}" end=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    lab_port_open "$1" "$2" && { lab_since "$start"; echo; return 0; }
    sleep 0.2
  done
  echo "timeout"; return 1
}
lab_wait_ssh() { lab_wait_port "$1" 22 "$2"; }
lab_ssh() ( ip=$(lab_node_ip "$1") || exit 2; shift
  lab_inprov ssh -i "$LAB_SSH_KEY" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=5 -o LogLevel=ERROR -o BatchMode=yes "root@$ip" "$@" )
lab_wait_grep() {  # lab_wait_grep FILE REGEX TIMEOUT
  local end=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$end" ]; do grep -qsE "$2" "$1" && return 0; sleep 0.2; done
  grep -qsE "$2" "$1"
}
lab_wait_gone() {  # lab_wait_gone PID TIMEOUT (zombie = gone: PID 1 may reap late)
  local end=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    awk '{exit ($3=="Z")}' "/proc/$1/stat" 2>/dev/null || return 0; sleep 0.1
  done; return 1
}
