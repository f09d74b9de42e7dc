#!/bin/bash
# tests/lab/vm-start.sh - "power on" of node $LAB_NODE: runs QEMU (TCG) in netns rbrack.
# Started detached by bmc-chassis.sh. Its own PID is the machine's power (run/qemu.pid): power
# off is a TERM to it. /dev/kvm on the lab host is PVM (kvm_pvm): -accel kvm hangs, -cpu host
# aborts. TCG only.
#
# Resets (VM_RESET): QEMU fixes the firmware's boot order when it starts, so a warm reset in
# place would ignore a boot device the BMC was given meanwhile. A real server's firmware reads
# the BMC's boot flags on every boot, the OS's own reboot included. VM_RESET=cold (default) runs
# QEMU with -no-reboot: a guest reboot (or a BMC reset) ends QEMU and this script starts it again
# at once with the BMC's current boot device, as that firmware would. VM_RESET=warm keeps QEMU's
# warm reset: a machine whose firmware ignores the BMC's boot device after an OS reboot.
source "$(cd "$(dirname "$0")" && pwd)/lab.env"
[ -f "$LAB_WORK/run/vm.env" ] && source "$LAB_WORK/run/vm.env"   # written by up.sh (VM_FW, VM_DISK ...)
exec </dev/null >>"$VM_DIR/logs/vm-start.log" 2>&1
# don't leak ipmi_sim's sockets into QEMU (fd 255 is bash's own script fd)
for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && [ "$n" -lt 255 ] && eval "exec $n>&-"; done 2>/dev/null
VM_RESET="${VM_RESET:-cold}"
echo $$ > "$VM_DIR/run/qemu.pid"     # this script is the power: TERM/KILL to it ends QEMU too
echo "$EPOCHREALTIME vm-start: $VM_NAME power on (fw=$VM_FW nic=$VM_NIC rom=$VM_NIC_ROM mem=$VM_MEM reset=$VM_RESET pid=$$)"
QPID=""
trap '[ -n "$QPID" ] && kill -KILL "$QPID" 2>/dev/null; wait; exit 0' TERM INT

boot_qemu() {  # one QEMU lifetime, with the BMC's boot device as it is now; returns QEMU's status

# boot device: bmc-chassis.sh stores `ipmitool chassis bootdev X` in a file (never ask ipmi_sim)
BOOTDEV=$(cat "$VM_DIR/state/bmc-bootdev" 2>/dev/null || echo default)
case "$BOOTDEV" in                 # ipmi_sim names: none pxe default(=disk) cdrom bios
  pxe) BOOT=n ;;
  default) BOOT=c ;;               # no disk: SeaBIOS fails it, then falls back to the NIC ROM
  cdrom) BOOT=d ;;
  *) BOOT=n ;;
esac

# serial console -> FIFO -> timestamping logger (epoch.usec per line). x86: the serial port is a
# TCP client of the node's sol-relay.py, which the BMC's SOL (ipmi_sim `sol "tcp:..."`) stays
# connected to across QEMU restarts; QEMU copies the guest's output to the FIFO too (logfile=),
# so this log does not depend on SOL.
FIFO="$VM_DIR/run/console.fifo"
rm -f "$FIFO"; mkfifo "$FIFO"
echo "$EPOCHREALTIME ==== $WHY (fw=$VM_FW bootdev=$BOOTDEV) ====" >> "$VM_DIR/logs/console.log"
( while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "${line//$'\r'/}"; done <"$FIFO" \
    >>"$VM_DIR/logs/console.log"; echo "$EPOCHREALTIME ==== console closed ====" >>"$VM_DIR/logs/console.log" ) &

FW_ARGS=(); MACHINE=pc,accel=tcg
if [ "$VM_FW" = uefi-sb ]; then
  # Secure Boot enforced (Debian's ovmf "secure-enrolled" descriptor): the secboot CODE needs SMM
  # (q35,smm=on); VARS with Microsoft's KEK/db and Secure Boot on (a per-VM copy); secure=on keeps
  # the guest from writing the variable store behind the firmware's back.
  [ -f "$VM_DIR/run/OVMF_VARS_SB.fd" ] || cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd "$VM_DIR/run/OVMF_VARS_SB.fd"
  MACHINE=q35,smm=on,accel=tcg
  FW_ARGS=(-global driver=cfi.pflash01,property=secure,value=on
           -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd
           -drive if=pflash,format=raw,unit=1,file="$VM_DIR/run/OVMF_VARS_SB.fd")
elif [ "$VM_FW" = uefi ]; then
  [ -f "$VM_DIR/run/OVMF_VARS.fd" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$VM_DIR/run/OVMF_VARS.fd"
  FW_ARGS=(-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
           -drive if=pflash,format=raw,unit=1,file="$VM_DIR/run/OVMF_VARS.fd")
fi
# NIC option ROM: default = ipxe-qemu's iPXE (BIOS+EFI). none: with uefi, OVMF's own PXE boots
# (DHCP arch 7 -> TFTP ipxe.efi -> iPXE -> HTTP); with bios nothing can netboot.
NIC_OPTS=""
case "$VM_NIC_ROM" in
  default) ;;
  none) NIC_OPTS=",romfile=" ;;
  *) NIC_OPTS=",romfile=$VM_NIC_ROM" ;;
esac
# disk mode: raw $VM_DIR/disk.img as virtio-blk. Boot order by bootindex (fw_cfg bootorder, which
# SeaBIOS and OVMF both follow; -boot order is CMOS, SeaBIOS only): bootdev default(=disk) -> disk
# first, any other -> NIC first; the firmware then tries the other device.
DISK_ARGS=(); NIC_IDX=""
if [ -n "${VM_DISK:-}" ]; then
  DISK="$VM_DIR/disk.img"
  [ -f "$DISK" ] || truncate -s "$VM_DISK" "$DISK"
  if [ "$BOOTDEV" = default ]; then d=0 n=1; else d=1 n=0; fi
  NIC_IDX=",bootindex=$n"
  DISK_ARGS=(-drive file="$DISK",format=raw,if=none,id=disk0 -device virtio-blk-pci,drive=disk0,bootindex=$d)
  # OVMF files its own PXEv4/PXEv6/HTTPv4 options under the NIC's bootindex, before the disk:
  # after the local-boot `exit` it would netboot again (boot menu) or time out ~60 s each. With
  # the NIC's iPXE ROM, switch OVMF's IP stacks off: order = [iPXE ROM, disk].
  if [ "${VM_FW#uefi}" != "$VM_FW" ] && [ "$VM_NIC_ROM" != none ]; then
    DISK_ARGS+=(-fw_cfg name=opt/org.tianocore/IPv4Support,string=no -fw_cfg name=opt/org.tianocore/IPv6Support,string=no)
  fi
  echo "$EPOCHREALTIME vm-start: disk $DISK ($VM_DISK), bootindex disk=$d nic=$n"
fi
echo "$EPOCHREALTIME vm-start: bootdev=$BOOTDEV"
EXTRA=(); [ -n "${VM_QEMU_EXTRA:-}" ] && read -ra EXTRA <<< "$VM_QEMU_EXTRA"   # opt-in extra args
RESET_ARGS=(); [ "$VM_RESET" = cold ] && RESET_ARGS=(-no-reboot)
if [ "$VM_FW" = arm64 ]; then
  # An ARM64 server: the QEMU virt machine with AAVMF (UEFI), whose own PXE asks DHCP with
  # arch 11 and loads arm64/ipxe.efi over TFTP. The NIC has no option ROM (QEMU's are x86).
  # virt has no ISA bus, so no in-band IPMI device: power still goes through the BMC's chassis
  # script (QMP and the pid), as for the x86 machines. Netboot only (no disk).
  [ -f "$VM_DIR/run/AAVMF_VARS.fd" ] || cp /usr/share/AAVMF/AAVMF_VARS.fd "$VM_DIR/run/AAVMF_VARS.fd"
  setpriv --pdeathsig KILL -- qemu-system-aarch64 \
    -name "$VM_NAME" -machine virt,accel=tcg -cpu cortex-a57 -m "$VM_MEM" -smp 1 \
    -nodefaults -no-user-config -nographic -monitor none \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd \
    -drive if=pflash,format=raw,unit=1,file="$VM_DIR/run/AAVMF_VARS.fd" \
    -netdev tap,id=n0,ifname="$VM_TAP",script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,mac="$VM_MAC",romfile=,bootindex=0 \
    -chardev file,id=con0,path="$FIFO" -serial chardev:con0 \
    -qmp unix:"$VM_DIR/run/qmp.sock",server=on,wait=off \
    "${RESET_ARGS[@]}" "${EXTRA[@]}" &
  QPID=$!; wait "$QPID"; return $?
fi
setpriv --pdeathsig KILL -- qemu-system-x86_64 \
  -name "$VM_NAME" -machine "$MACHINE" -m "$VM_MEM" -smp 1 \
  -nodefaults -no-user-config -nographic -monitor none \
  "${FW_ARGS[@]}" \
  -boot order="$BOOT" \
  -netdev tap,id=n0,ifname="$VM_TAP",script=no,downscript=no \
  -device "$VM_NIC",netdev=n0,mac="$VM_MAC"$NIC_OPTS$NIC_IDX \
  "${DISK_ARGS[@]}" \
  -chardev socket,id=ipmi0,host=127.0.0.1,port="$VM_IPMI_PORT",reconnect=10 \
  -device ipmi-bmc-extern,id=bmc0,chardev=ipmi0 \
  -device isa-ipmi-kcs,bmc=bmc0 \
  -chardev socket,id=con0,host=127.0.0.1,port="$VM_SOL_VM_PORT",reconnect=1,logfile="$FIFO" \
  -serial chardev:con0 \
  -qmp unix:"$VM_DIR/run/qmp.sock",server=on,wait=off \
  "${RESET_ARGS[@]}" "${EXTRA[@]}" &
QPID=$!; wait "$QPID"; return $?
}

# A QEMU that ends by itself (status 0) was reset by its guest or the BMC (-no-reboot): boot
# again. Bounded: a machine that resets itself 1000 times in one power-on is broken.
WHY="power on"
for boots in $(seq 1000); do
  boot_qemu; rc=$?; WHY="reset $boots"
  QPID=""
  [ "$VM_RESET" = cold ] && [ "$rc" = 0 ] || { echo "$EPOCHREALTIME vm-start: qemu ended (status $rc): power off"; exit 0; }
  echo "$EPOCHREALTIME vm-start: reset (qemu ended, status 0): booting again with the BMC's boot device"
  sleep 0.05
done
