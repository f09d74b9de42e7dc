#!/bin/bash
# tests/lab/e2e-standin.sh [bios|uefi] - the lab's end-to-end loop against the stand-in server
# (LAB_SERVER=standin: dnsmasq DHCP/TFTP + standin/standin_http.py), timed:
#   up.sh -> bootdev pxe (read back) -> power on (all LAB_NODES at once) -> DHCP/(TFTP)/HTTP boot
#   -> ks -> callback -> :22 -> ssh + :8096 checks -> power off -> QEMU gone -> down.sh
# Disk mode (VM_DISK=256M): power on -> installer writes disk.img to /dev/vda -> callback
#   stage=installed -> guest reboots -> iPXE gets the local-boot script (exit) -> firmware boots
#   the disk -> :22 -> ssh sees booted-from=disk (rig.local=1).
# Env: LAB_NODES (1..4), VM_NIC_ROM=none (uefi: OVMF's own PXE), VM_DISK, BOOT_TIMEOUT (180 s),
#      LAB_PCAP=0 (no tcpdump), KEEP=1 (leave the lab up). Exit 0 only when every check passed.
# Prints one line per node: "RESULT ... power on -> :22 <s>".
set -uo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
export LAB_SERVER=standin
FW="${1:-$VM_FW}"
BOOT_TIMEOUT="${BOOT_TIMEOUT:-180}"
W="$LAB_WORK"
PASS=0; FAIL=0
ok()  { echo "PASS: $*"; PASS=$((PASS+1)); }
bad() { echo "FAIL: $*"; FAIL=$((FAIL+1)); }
cleanup() { [ "${KEEP:-0}" = 1 ] && { echo "KEEP=1: lab left up ($LAB/down.sh)"; return; }; "$LAB/down.sh" >/dev/null 2>&1; }
trap cleanup EXIT
trap 'exit 130' INT TERM
NODES=$(seq 0 $((LAB_NODES-1)))
MODE="netboot"; [ -n "$VM_DISK" ] && MODE="disk($VM_DISK)"
VARIANT="fw=$FW rom=$VM_NIC_ROM nic=$VM_NIC mode=$MODE nodes=$LAB_NODES"
[ "$FW" = uefi ] && [ "$VM_NIC_ROM" = none ] && [ -n "$VM_DISK" ] && echo "note: uefi + VM_NIC_ROM=none + disk:" \
  "OVMF ends in its boot menu after the local-boot exit (README); expect the disk step to fail"

echo "== up ($VARIANT)"
t=$(lab_now); "$LAB/up.sh" "$FW" || { bad "up.sh"; exit 1; }; echo "up.sh took $(lab_since "$t") s"
lab_vm_env
if [ "${LAB_PCAP:-1}" = 1 ]; then
  lab_inprov tcpdump -i eth0 -n -U -s 0 -w "$W/logs/prov.pcap" >/dev/null 2>"$W/logs/tcpdump.stderr" &
  lab_realpid $! tcpdump > "$W/run/tcpdump.pid"
  lab_wait_grep "$W/logs/tcpdump.stderr" 'listening on' 5 || echo "note: tcpdump not confirmed"
fi
code=$(lab_inprov curl -s -o /dev/null -w '%{http_code}' -m 3 -X POST -d stage=ready "http://$PROV_IP:$HTTP_PORT/done/52-54-00-77-00-50")
[ "$code" = 403 ] && ok "stand-in rejects a callback without token (403)" || bad "callback without token: HTTP $code"

echo "== IPMI (lanplus -C $IPMI_CIPHER, $IPMI_USER)"
for i in $NODES; do
  [ "$(lab_power_state "$i")" = off ] && ok "node $i power status off" || bad "node $i not off"
  lab_bootdev "$i" pxe && ok "node $i bootdev pxe (read back)" || bad "node $i bootdev pxe not applied"
done

echo "== power on ($LAB_NODES node(s) at once)"
lab_mark T_ON; export LAB_T0=$T_ON
pids=(); for i in $NODES; do lab_ipmi "$i" chassis power on >/dev/null & pids+=($!); done
wait "${pids[@]}"          # not a bare wait: tcpdump runs in the background too
echo "power on commands returned after $(lab_since "$T_ON") s"
declare -A T22=() TINST=()
waitnode() {  # per node, in the background: [installed callback] -> :22 ; writes run/e2e.<i>
  local i=$1 mh done t=""
  mh=$(lab_node_mac "$i"); mh=${mh//:/-}; done="$W/state/done-$mh"
  if [ -n "$VM_DISK" ]; then
    if lab_wait_grep "$done" 'stage=installed' "$BOOT_TIMEOUT"; then t=$(awk '/stage=installed/{print $1; exit}' "$done")
    else echo "inst=timeout 22=skipped" > "$W/run/e2e.$i"; return; fi
  fi
  echo "inst=${t:-none} 22=$(lab_wait_ssh "$i" "$BOOT_TIMEOUT")" > "$W/run/e2e.$i"
}
pids=(); for i in $NODES; do waitnode "$i" & pids+=($!); done; wait "${pids[@]}"
for i in $NODES; do
  name=$(lab_node_name "$i"); ip=$(lab_node_ip "$i"); mac=$(lab_node_mac "$i"); mh=${mac//:/-}
  read -r inst s22 < "$W/run/e2e.$i"; inst=${inst#inst=}; s22=${s22#22=}
  TINST[$i]=$inst; T22[$i]=$s22
  if [ -n "$VM_DISK" ]; then
    [[ "$inst" =~ ^[0-9.]+$ ]] && ok "node $i install callback (stage=installed) $(lab_dt "$T_ON" "$inst") s after power on" \
      || bad "node $i no stage=installed callback within $BOOT_TIMEOUT s"
    grep -q "GET /boot/disk.img 200 $(stat -c %s "$LAB_BOOT/disk.img") " "$W/logs/http.log" \
      && ok "installer fetched the whole /boot/disk.img" || bad "no complete GET /boot/disk.img"
  fi
  if [[ "$s22" =~ ^[0-9.]+$ ]]; then ok "node $i :22 open $s22 s after power on"; else bad "node $i :22 not open ($s22)"; continue; fi
  lab_port_open "$i" "$VM_SERVICE_PORT" && ok "node $i :$VM_SERVICE_PORT open" || bad "node $i :$VM_SERVICE_PORT closed"
  out=$(lab_ssh "$i" 'hostname; cat /etc/rig-provisioned; grep -o "rig.local=1" /proc/cmdline; uname -r' 2>&1)
  echo "$out" | sed "s/^/  ssh $name> /"
  [[ "$out" == *"provisioned-by=$PROV_IP host=$name ip=$ip mac=$mac"* ]] \
    && ok "node $i ssh login, kickstart applied" || bad "node $i ssh/kickstart: $out"
  if [ -n "$VM_DISK" ]; then
    [[ "$out" == *booted-from=disk* && "$out" == *rig.local=1* ]] && ok "node $i booted from disk (rig.local=1, booted-from=disk)" \
      || bad "node $i did not boot from disk"
    awk -v t="$inst" '$1>t && /GET \/ipxe\/'"$mh"'/' "$W/logs/http.log" | grep -q LOCAL-BOOT \
      && ok "node $i: after the callback /ipxe/$mh answered the local-boot script" || echo "note: node $i no LOCAL-BOOT request after the callback"
    [ "$(awk -v t="$inst" '$1>t && /GET \/boot\/(vmlinuz|initrd)/' "$W/logs/http.log" | wc -l)" = 0 ] \
      && ok "node $i: no kernel/initrd download after the install" || bad "node $i: kernel/initrd netbooted again after install"
  else
    lab_wait_grep "$W/state/done-$mh" 'stage=ready' 10 && ok "node $i callback with token recorded: $(tail -n1 "$W/state/done-$mh" | cut -d' ' -f3)" \
      || bad "node $i no stage=ready callback"
  fi
done

echo "== timeline node 0 (t=0: ipmitool chassis power on)"
n0=$(lab_node_dir 0)
end0=$(awk -v a="$T_ON" -v s="${T22[0]}" 'BEGIN{if (s ~ /^[0-9.]+$/) printf "%.3f", a+s+0.5; else print "9e99"}')
python3 "$LAB/timeline.py" "$W" "$n0" "$(lab_node_ip 0)" "$T_ON" "$end0" | cut -c1-110

echo "== power off"
for i in $NODES; do
  d=$(lab_node_dir "$i"); P=$(cat "$d/run/qemu.pid" 2>/dev/null)
  t=$(lab_now); lab_ipmi "$i" chassis power off >/dev/null
  if [ -n "$P" ] && lab_wait_gone "$P" 10; then ok "node $i qemu $P gone $(lab_since "$t") s after power off"
  else bad "node $i qemu ${P:-?} still running"; fi
  [ "$(lab_power_state "$i")" = off ] && ok "node $i power status off" || bad "node $i power status not off"
  lab_port_open "$i" 22 && bad "node $i :22 still open" || ok "node $i :22 closed"
done
grep -E 'RIG: .*(FAILED|failed)' "$n0/logs/console.log" | sed 's/^/  console: /' | head -5

for i in $NODES; do
  if [ -n "$VM_DISK" ]; then
    i22=$(awk -v a="${TINST[$i]}" -v t="$T_ON" -v s="${T22[$i]}" 'BEGIN{if (a ~ /^[0-9.]+$/ && s ~ /^[0-9.]+$/) printf "%.2f", t+s-a; else print "-"}')
    ins=$([[ "${TINST[$i]}" =~ ^[0-9.]+$ ]] && lab_dt "$T_ON" "${TINST[$i]}" || echo -)
    echo "RESULT $VARIANT node $i: power on -> installed ${ins} s -> :22 (from disk) ${T22[$i]} s (callback -> :22 $i22 s)"
  else
    echo "RESULT $VARIANT node $i: power on -> :22 ${T22[$i]} s"
  fi
done
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
