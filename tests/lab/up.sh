#!/bin/bash
# tests/lab/up.sh [bios|uefi|arm64] - build the lab and leave every machine POWERED OFF.
#
#   netns rbprov                      netns rbrack
#     eth0 10.77.0.1/24  ==veth==  prov0 ─┐
#     provisioner (section 2):            br0 10.77.0.2/24 (+ .2<i>, + fd77:77::2/64 RA only)
#       LAB_SERVER=rackboot (default)     │  ipmi_sim i: UDP <BMC_IP>:623 (user admin/rigpass)
#       LAB_SERVER=standin                ├─ tap<i>: QEMU node5<i> 52:54:00:77:00:5<i> -> 10.77.0.5<i>
#     ipmitool / ssh (tests)              └─ QEMU <-> ipmi_sim: 127.0.0.1:900<2+i> (ipmi-bmc-extern)
#
# Env: LAB_NODES=1..4, VM_FW=bios|uefi|uefi-sb|arm64 (or $1; uefi-sb: OVMF with Secure Boot enforced), VM_NIC_ROM=default|none, VM_DISK=256M (disk mode),
#      VM_NIC, VM_MEM, LAB_WORK (/tmp/rackboot-lab), LAB_BOOT ($REPO/.lab/boot), LAB_SERVER,
#      RACKBOOT_BIN, LAB_CONFIG, LAB_IPV6_RA=1, KEEP=1 (keep a half-built lab on failure).
# Power a machine from the provisioner side (or use lib.sh: lab_ipmi 0 chassis power on):
#   ip netns exec rbprov ipmitool -I lanplus -C 3 -H 10.77.0.2 -U admin -P rigpass chassis power on
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lab.env"
VM_FW="${1:-$VM_FW}"
W="$LAB_WORK"
case "$VM_FW" in bios|uefi|uefi-sb|arm64) ;; *) echo "up.sh: VM_FW must be bios, uefi, uefi-sb or arm64 (got $VM_FW)" >&2; exit 2;; esac
case "$LAB_SERVER" in rackboot|standin) ;; *) echo "up.sh: LAB_SERVER must be rackboot or standin" >&2; exit 2;; esac
[[ "$LAB_NODES" =~ ^[1-9][0-9]*$ ]] && [ "$LAB_NODES" -le "$LAB_MAX_NODES" ] \
  || { echo "up.sh: LAB_NODES must be 1..$LAB_MAX_NODES" >&2; exit 2; }
[ "$VM_FW" = bios ] && [ "$VM_NIC_ROM" = none ] && echo "up.sh: warning: bios + VM_NIC_ROM=none cannot netboot" >&2
case "$W" in "$REPO"|"$REPO"/*) [[ "$W" == "$REPO/.lab"* ]] \
  || { echo "up.sh: LAB_WORK must not be inside the repo (except .lab/)" >&2; exit 2; };; esac
export LAB_WORK LAB_BOOT LAB_KEYS LAB_CACHE LAB_FIRMWARE LAB_MACHINES LAB_SERVER

"$LAB/down.sh" >/dev/null 2>&1 || true
UP_OK=0
cleanup() { [ "$UP_OK" = 1 ] || [ "${KEEP:-0}" = 1 ] || { echo "up.sh: failed, tearing down" >&2; "$LAB/down.sh" >/dev/null 2>&1; }; }
trap cleanup EXIT

rm -rf "$W"/logs "$W"/run "$W"/state "$W"/node[0-9]*
mkdir -p "$W"/{logs,run,state}
"$LAB/build-boot.sh"                                   # cached: only rebuilds stale outputs
for f in undionly.kpxe ipxe.efi snponly.efi; do
  [ -s "$LAB_FIRMWARE/$f" ] || { "$REPO/scripts/fetch-firmware.sh"; break; }
done
if [ -n "$VM_DISK" ]; then                             # the image must fit the disk
  truncate -s "$VM_DISK" "$W/run/disk-size.probe"
  sz=$(stat -c %s "$W/run/disk-size.probe"); rm -f "$W/run/disk-size.probe"
  [ "$sz" -ge "$(stat -c %s "$LAB_BOOT/disk.img")" ] || { echo "up.sh: VM_DISK=$VM_DISK < $LAB_BOOT/disk.img" >&2; exit 1; }
fi
printf 'VM_FW=%s\nVM_NIC=%s\nVM_MEM=%s\nVM_NIC_ROM=%s\nVM_DISK=%s\nVM_RESET=%s\n' "$VM_FW" "$VM_NIC" "$VM_MEM" "$VM_NIC_ROM" "$VM_DISK" "${VM_RESET:-cold}" > "$W/run/vm.env"
printf 'LAB_NODES=%s\nLAB_SERVER=%s\n' "$LAB_NODES" "$LAB_SERVER" >> "$W/run/vm.env"

inprov() { ip netns exec "$NS_PROV" "$@"; }
inrack() { ip netns exec "$NS_RACK" "$@"; }
# wait_for TRIES DELAY CMD... : bounded poll
wait_for() { local n="$1" d="$2"; shift 2; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep "$d"; done; return 1; }

# ========================== 1. network ========================================================
ip netns add "$NS_PROV"
ip netns add "$NS_RACK"
ip link add eth0 netns "$NS_PROV" type veth peer name prov0 netns "$NS_RACK"
inrack ip link set lo up
inrack ip link add br0 type bridge stp_state 0 forward_delay 0
inrack ip link set prov0 master br0
inrack ip addr add "$NET_PREFIX.2/24" dev br0
for i in $(seq 0 $((LAB_NODES-1))); do
  inrack ip tuntap add dev "tap$i" mode tap
  inrack ip link set "tap$i" master br0
  [ "$i" -gt 0 ] && inrack ip addr add "$NET_PREFIX.$((20+i))/24" dev br0
done
for l in prov0 br0 $(seq -f 'tap%g' 0 $((LAB_NODES-1))); do inrack ip link set "$l" up; done
inprov ip link set lo up
inprov ip addr add "$PROV_IP/24" dev eth0
inprov ip link set eth0 up
# Lab "router" (infrastructure, not the provisioner): IPv6 RA only (ULA, SLAAC) from a second,
# RA-only dnsmasq on br0. Without any RA, iPXE 2019 sits in IPv6 "Configuring" ~16 s.
if [ "${LAB_IPV6_RA:-1}" = 1 ]; then
  inrack ip -6 addr add fd77:77::2/64 dev br0 nodad
  inrack dnsmasq --port=0 --user=root --interface=br0 --bind-interfaces --enable-ra \
    --dhcp-range=fd77:77::,ra-only,64,10m --pid-file="$W/run/radnsmasq.pid" \
    --log-facility="$W/logs/ra-dnsmasq.log"
fi
wait_for 50 0.1 bash -c "ip netns exec $NS_PROV ip -o link show eth0 | grep -q LOWER_UP" \
  || { echo "up.sh: veth has no carrier" >&2; exit 1; }

# ==================== 2. PROVISIONER (the swap point) ========================================
# Runs inside netns rbprov on eth0/10.77.0.1 and must serve (contract, see README.md):
#   DHCP :67   static lease per inventory; boot file: TFTP undionly.kpxe (BIOS, not iPXE),
#              ipxe.efi (client arch 7/9, not iPXE), http://10.77.0.1:8080/boot.ipxe (iPXE,
#              user class "iPXE" / option 175); to iPXE also option 175.176 = 1 (b0:01:01)
#   TFTP :69   $LAB_FIRMWARE (undionly.kpxe ipxe.efi snponly.efi)
#   HTTP :8080 /healthz; iPXE scripts; kernel/initrd/disk.img from $LAB_BOOT; ks= and rig.done=
#              URLs named on the kernel command line (guest/init)
SERVER_DIR="$W/server"; mkdir -p "$SERVER_DIR"
if [ "$LAB_SERVER" = rackboot ]; then
  BIN="${RACKBOOT_BIN:-$REPO/target/debug/rackboot}"
  CONF="${LAB_CONFIG:-$REPO}"
  [ -x "$BIN" ] || { echo "up.sh: $BIN not built (cargo build) - or LAB_SERVER=standin" >&2; exit 1; }
  echo "up.sh: starting $BIN serve --config $CONF (netns $NS_PROV, cwd $SERVER_DIR)"
  # cwd outside the repo so relative data paths never land in the checkout; the LAB_* paths
  # (boot payload, firmware, ssh key, inventory) are in its environment for the config to use
  ( cd "$SERVER_DIR" && LAB_PUBKEY="$LAB_SSH_KEY.pub" LAB_PROV_IP="$PROV_IP" \
      exec ip netns exec "$NS_PROV" "$BIN" serve --config "$CONF" ) \
    </dev/null >"$W/logs/server.log" 2>&1 &
  lab_realpid $! "$(basename "$BIN")" > "$W/run/server.pid"
else
  EFI_BOOT="${LAB_EFI_BOOTFILE:-ipxe.efi}"
  {
    echo "# generated by tests/lab/up.sh (LAB_SERVER=standin)"
    echo "interface=eth0"
    echo "bind-interfaces"
    echo "except-interface=lo"
    echo "port=0"
    echo "user=root"
    echo "log-dhcp"
    echo "log-facility=$W/logs/dnsmasq.log"
    echo "dhcp-leasefile=$W/state/dnsmasq.leases"
    echo "dhcp-range=$NET_PREFIX.0,static,255.255.255.0,10m"
    echo "dhcp-ignore=tag:!known"                  # only inventory MACs get a lease
    echo "dhcp-option=option:router,$PROV_IP"
    echo "enable-tftp"
    echo "tftp-root=$LAB_FIRMWARE"
    echo "dhcp-match=set:ipxe,175"                 # iPXE sends option 175 ...
    echo "dhcp-userclass=set:ipxe,iPXE"            # ... and user class iPXE
    echo "dhcp-match=set:efi64,option:client-arch,7"
    echo "dhcp-match=set:efi64,option:client-arch,9"
    echo "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe,,$PROV_IP"
    echo "dhcp-boot=tag:!ipxe,tag:efi64,$EFI_BOOT,,$PROV_IP"
    echo "dhcp-boot=tag:ipxe,http://$PROV_IP:$HTTP_PORT/boot.ipxe"
    # iPXE 175.176 no-pxedhcp=1: skip iPXE's 2 s ProxyDHCP wait
    [ "${LAB_NO_PXEDHCP:-1}" = 1 ] && echo "dhcp-option=tag:ipxe,175,b0:01:01"
    grep -v '^\s*#' "$LAB_MACHINES" | awk 'NF>=3{print "dhcp-host=" $1 "," $2 "," $3}'
  } > "$W/run/dnsmasq.conf"
  inprov dnsmasq --conf-file="$W/run/dnsmasq.conf" --pid-file="$W/run/dnsmasq.pid" \
    >"$W/logs/dnsmasq.stderr" 2>&1
  inprov python3 "$LAB/standin/standin_http.py" --bind "$PROV_IP" --port "$HTTP_PORT" \
    --boot-dir "$LAB_BOOT" --templates "$LAB/standin/templates" --inventory "$LAB_MACHINES" \
    --pubkey "$LAB_SSH_KEY.pub" --state "$W/state" --log "$W/logs/http.log" \
    --pidfile "$W/run/http.pid" ${VM_DISK:+--disk-mode} </dev/null >"$W/logs/http.stderr" 2>&1 &
fi
# both servers: /healthz must answer within 10 s (deadline, not a try count: curl may block 1 s)
healthz() { inprov curl -fsS -m 1 -o /dev/null "http://$PROV_IP:$HTTP_PORT/healthz" 2>/dev/null; }
srv_gone() { local p; p=$(cat "$W/run/server.pid" 2>/dev/null) || return 1
  [ -n "$p" ] && ! { [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat")" != Z ]; }; }
deadline=$(( $(date +%s%N) / 1000000 + 10000 ))
until healthz; do
  why=""
  srv_gone && why="server exited"
  [ "$(( $(date +%s%N) / 1000000 ))" -ge "$deadline" ] && why="no answer within 10 s"
  if [ -n "$why" ]; then
    echo "up.sh: http://$PROV_IP:$HTTP_PORT/healthz: $why ($LAB_SERVER); log tail:" >&2
    tail -n 20 "$W/logs/server.log" "$W/logs/http.stderr" 2>/dev/null >&2 || true
    exit 1
  fi
  sleep 0.2
done
# ======================== end of provisioner ==================================================

# ==================== 3. simulated BMCs (one ipmi_sim per machine) ===========================
start_bmc() {  # start_bmc I   (in a subshell: lab_node changes globals)
  lab_node "$1"
  local D="$VM_DIR"
  mkdir -p "$D"/{logs,run,state/ipmi}
  [ -z "$VM_DISK" ] || truncate -s "$VM_DISK" "$D/disk.img"   # fresh, blank disk per up.sh
  cat > "$D/run/lan.conf" <<LAN
name "rbbmc$1"
set_working_mc 0x20
  startlan 1
    addr $BMC_IP 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcd$(printf '%02x' "$1")
  endlan
  serial 15 127.0.0.1 $VM_IPMI_PORT codec VM
  sol "tcp:127.0.0.1:$VM_SOL_PORT" 115200
  poweroff_wait 10
  kill_wait 5
  chassis_control "$LAB/bmc-chassis.sh 0x20"
  user 2 true "$IPMI_USER" "$IPMI_PASS" admin 10 none md2 md5 straight
LAN
  printf 'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 dynsens\nmc_enable 0x20\n' > "$D/run/bmc.emu"
  export LAB_NODE="$1"            # bmc-chassis.sh / vm-start.sh read it
  # The serial line between ipmi_sim's SOL and each QEMU, kept across QEMU restarts.
  inrack python3 "$LAB/sol-relay.py" "$VM_SOL_PORT" "$VM_SOL_VM_PORT" \
    </dev/null >"$D/logs/sol-relay.log" 2>&1 &
  lab_realpid $! python3 > "$D/run/sol-relay.pid"
  wait_for 50 0.1 grep -q "sol-relay:" "$D/logs/sol-relay.log" \
    || { echo "up.sh: SOL relay of node $1 did not start ($D/logs/sol-relay.log)" >&2; exit 1; }
  inrack ipmi_sim -c "$D/run/lan.conf" -f "$D/run/bmc.emu" -s "$D/state/ipmi" -n \
    </dev/null >"$D/logs/ipmi_sim.log" 2>&1 &
  lab_realpid $! ipmi_sim > "$D/run/ipmi_sim.pid"
}
for i in $(seq 0 $((LAB_NODES-1))); do ( start_bmc "$i" ); done
for i in $(seq 0 $((LAB_NODES-1))); do
  ( lab_node "$i"; wait_for 30 0.2 inprov "${IPMITOOL[@]}" chassis power status ) \
    || { echo "up.sh: BMC of node $i not answering (log: $LAB_WORK/node$i/logs/ipmi_sim.log)" >&2; exit 1; }
done

UP_OK=1
echo "lab up: fw=$VM_FW rom=$VM_NIC_ROM nodes=$LAB_NODES server=$LAB_SERVER${VM_DISK:+ disk=$VM_DISK} work=$W boot=$LAB_BOOT"
for i in $(seq 0 $((LAB_NODES-1))); do
  ( lab_node "$i"; echo "  node $i: $VM_NAME $VM_MAC $VM_IP  BMC $BMC_IP:623 ($(inprov "${IPMITOOL[@]}" chassis power status))" )
done
