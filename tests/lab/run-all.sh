#!/bin/bash
# tests/lab/run-all.sh - the end-to-end suite in the project's QEMU lab, with rackboot as the
# only DHCP/TFTP/HTTP server and its own IPMI driver (no ipmitool) powering the machines.
# Cases (each prints PASS/FAIL and its figures; the script exits non-zero if any failed):
#   bios-disk      reimage node50 --wait --junit: PXE -> installer writes the disk -> callback ->
#                  boot device disk at the callback -> the reboot goes straight to the disk (VM_RESET=cold)
#                  -> SSH + :8096 -> config + test stages over SSH
#   bmc-down       reimage node53 (no BMC answers at 10.77.0.23): fails in the power phase with
#                  "BMC unreachable" inside its deadline; the lock is released
#   stage-fails    a profile whose test stage fails: exit 1, its log in the CLI output, JUnit failure
#   kill9-resume   kill -9 rackboot during the install phase, start it again: the run resumes, succeeds
#   kill9-kernel   kill -9 rackboot the moment iPXE has its script (the kernel download), start it
#                  again at once: the script's download retries carry the machine to SSH
#   daemon-down    kill -9 rackboot at node50's first DHCP answer, down 30 s: the firmware gives up
#                  on the netboot; the run's boot deadline power-cycles it (boot retry) once back
#   two-at-once    reimage node50 node51 --wait: both succeed
#   inspect-discovered  pool mode with `dhcp.inspect_discovered = true` and node51 left out of
#                  systems.toml: node51 (powered on through its BMC with ipmitool: rackboot does not
#                  know it) gets a pool address and the inspect image, reports its facts against
#                  its MAC (`rackboot discovered --json`; they must match how up.sh started it) and
#                  powers itself off (VM_RESET=warm: with -no-reboot a guest poweroff and a reset
#                  both end QEMU with status 0, and vm-start.sh would boot it again)
#   unknown-mac    a client not in the inventory gets no DHCP answer (reservations mode)
#   uefi-disk      as bios-disk with OVMF (iPXE EFI ROM), on a firmware that ignores the BMC's boot
#                  device on the OS's reboot (VM_RESET=warm): the fallback, the local-boot script
#   uefi-norom     OVMF's own PXE: DHCP arch 7 -> TFTP ipxe.efi -> iPXE -> HTTP (diskless profile)
#   proxy          rackboot in proxy mode beside a site DHCP server (dnsmasq on the rack bridge:
#                  addresses only, no boot options): reimage node50 (BIOS, disk) end to end
#   uefi-sb-unsigned  OVMF with Secure Boot enforced (secboot CODE + Microsoft-enrolled VARS, q35
#                  SMM, no NIC ROM), node50 on an iPXE profile: DHCP arch 7 -> TFTP ipxe.efi, which
#                  the firmware refuses ("Access Denied"); no script is ever fetched
#   uefi-sb        the same firmware, node50 on a `loader = "grub"` disk profile: DHCP -> TFTP
#                  grub/bootx64.efi (signed shim) -> grub/grubx64.efi (signed GRUB) -> grub/grub.cfg
#                  -> grub.cfg-<mac> -> signed Debian kernel + initrd over TFTP -> installer writes
#                  the disk -> callback (boot device disk) -> the disk's shim -> GRUB -> signed
#                  kernel -> SSH -> stages; the kernel says Secure Boot is enabled on both boots
#   arm64          an ARM64 machine (QEMU virt, AAVMF, no NIC ROM): DHCP arch 11 -> TFTP
#                  arm64/ipxe.efi -> iPXE arm64 -> per-MAC script -> kernel + initrd over HTTP
#                  (the lab's payload is x86_64: the case checks what rackboot served, no OS)
# LAB_CASES="bios-disk uefi-disk" runs a subset. Needs root, scripts/install-deps.sh, a built binary.
set -uo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lab.env"
source "$LAB/lib.sh"
BIN="${RACKBOOT_BIN:-$REPO/target/debug/rackboot}"
CASES="${LAB_CASES:-bios-disk inspect bmc-down stage-fails kill9-resume kill9-kernel daemon-down two-at-once unknown-mac inspect-discovered uefi-disk uefi-norom uefi-sb-unsigned uefi-sb proxy arm64}"
OUT="${LAB_RESULTS:-$LAB_WORK-results}"
rm -rf "$OUT"; mkdir -p "$OUT"
CONF="$OUT/config"
results=()
failed=0

want() { [[ " $CASES " == *" $1 "* ]]; }
pass() { results+=("PASS $1 ${2:-}"); echo "PASS $1 ${2:-}"; }
fail() { results+=("FAIL $1 ${2:-}"); echo "FAIL $1 ${2:-}"; failed=1; }
cleanup() { "$LAB/down.sh" >/dev/null 2>&1; }
trap cleanup EXIT

# A copy of the repository's lab config with absolute paths, a fresh data dir per lab, and one
# extra profile whose test stage fails.
make_config() {
  lab_config "$CONF" "$OUT/data" "s#^mode = \"reservations\"#mode = \"${LAB_DHCP_MODE:-reservations}\"#"
  cat > "$CONF/profiles/lab-disk-failing.toml" <<'EOF'
parent = "lab-disk"
description = "lab-disk whose test stage fails (run-all.sh stage-fails)"
[[stages]]
name = "configure"
kind = "config"
command = "echo configure ok"
[[stages]]
name = "must-fail"
kind = "test"
command = "echo 'checking /etc/nonexistent on {{ ip }}'; ssh -i {{ ssh_key }} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes root@{{ ip }} cat /etc/nonexistent"
timeout = "1m"
EOF
  cat > "$CONF/profiles/lab-disk-retry.toml" <<'EOF'
parent = "lab-disk"
description = "lab-disk with short boot deadlines (run-all.sh daemon-down)"
boot_retries = 2
[timeouts]
dhcp = "40s"
kernel = "40s"
config = "60s"
EOF
  # Secure Boot: the disk lab profile through Debian's signed shim + GRUB. The loader follows
  # the system's profile (not a run's --profile), so LAB_NODE50_PROFILE moves node50 onto it.
  cat > "$CONF/profiles/lab-sb.toml" <<'EOF'
parent = "lab-disk"
description = "lab-disk through Debian's signed shim and GRUB (Secure Boot)"
loader = "grub"
EOF
  # inspect-discovered: pool mode, discovered machines inspected, node51 not in the inventory.
  if [ -n "${LAB_INSPECT_DISCOVERED:-}" ]; then
    sed -i 's#^mode = .*#mode = "pool"\npool_start = "10.77.0.100"\npool_end = "10.77.0.120"\ninspect_discovered = true#' \
      "$CONF/rackboot.toml"
    python3 - "$CONF/systems.toml" <<'PY'
import re, sys
p = sys.argv[1]; text = open(p).read()
# drop every table of node51 ([systems.node51], [systems.node51.bmc], ...)
out, skip = [], False
for line in text.splitlines(keepends=True):
    m = re.match(r"\s*\[+([^\]]+)\]+", line)
    if m:
        skip = m.group(1).strip() == "systems.node51" or m.group(1).strip().startswith("systems.node51.")
    if not skip:
        out.append(line)
open(p, "w").write("".join(out))
PY
  fi
  if [ -n "${LAB_NODE50_PROFILE:-}" ]; then
    sed -i "/^\[systems.node50\]/,/^profile/ s/^profile = .*/profile = \"$LAB_NODE50_PROFILE\"/" "$CONF/systems.toml"
  fi
}

rb() { ip netns exec "$NS_PROV" "$BIN" --config "$CONF" "$@"; }
# The operator API needs a token: the daemon's generated admin token (data_dir/api-token).
auth() { printf 'Authorization: Bearer %s' "$(cat "$OUT/data/api-token")"; }

lab() {  # lab FW NODES [VM_NIC_ROM]
  cleanup
  make_config
  VM_FW="$1" LAB_NODES="$2" VM_NIC_ROM="${3:-default}" VM_DISK=256M LAB_CONFIG="$CONF" VM_RESET="${VM_RESET:-cold}" \
    RACKBOOT_BIN="$BIN" "$LAB/up.sh" "$1" > "$OUT/up-$1-$2-${3:-default}.log" 2>&1 \
    || { cat "$OUT/up-$1-$2-${3:-default}.log"; return 1; }
}

# power-on -> SSH seconds of a finished run, from its stored timeline
ssh_time() {
  rb runs show "$1" --json | python3 -c '
import json,sys
v=json.load(sys.stdin); t={e["detail"]:e["t"] for e in v["timeline"]}
p=[e["t"] for e in v["timeline"] if e["state"]=="dhcp"]
s=[e["t"] for e in v["timeline"] if e["detail"].endswith("SSH and service ports up")]
print("%.1f" % (s[0]-p[0]) if p and s else "?")'
}

run_json_id() { python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["id"])'; }

reimage_case() {  # reimage_case NAME SYSTEM [extra args]
  local name=$1 sys=$2; shift 2
  local log="$OUT/$name.out"
  rb reimage "$sys" --wait --junit "$OUT/$name.xml" --timeout 10m "$@" > "$log" 2>&1
  local rc=$?
  cat "$log"
  [ $rc = 0 ] || { fail "$name" "exit $rc"; return 1; }
  grep -q 'failures="0"' "$OUT/$name.xml" || { fail "$name" "JUnit has failures"; return 1; }
  local id; id=$(grep -o 'run-[0-9]*-[0-9a-f]*' "$log" | head -1)
  echo "$id" > "$OUT/$name.id"
  return 0
}

# kill_at NAME DOWN_SECS WHEN [PROFILE]: reimage node50, kill -9 rackboot the moment WHEN happens
# (script: node50's iPXE has its per-MAC script, the kernel download starts; dhcp: node50's first
# DHCP was answered, its firmware is about to load iPXE over TFTP), start rackboot again after
# DOWN_SECS; prints the run id.
kill_at() {
  local name=$1 down=$2 when=$3 ev="$OUT/$1-events.txt" ev_pid id ok=0 pid
  rm -f "$ev"
  ip netns exec "$NS_PROV" timeout 120 curl -sN -H "$(auth)" http://127.0.0.1:9080/api/v1/events > "$ev" 2>/dev/null &
  ev_pid=$!
  sleep 0.3
  id=$(rb reimage node50 --json ${4:+--profile "$4"} | run_json_id)
  local pat='"what":"script"'; [ "$when" = dhcp ] && pat='"to":"kernel"'
  for _ in $(seq 3000); do
    if grep "$pat" "$ev" 2>/dev/null | grep -q '"system":"node50"'; then ok=1; break; fi
    sleep 0.02
  done
  kill "$ev_pid" 2>/dev/null
  [ $ok = 1 ] || { echo "$name: node50 never fetched its script" >&2; return 1; }
  pid=$(cat "$LAB_WORK/run/server.pid")
  kill -9 "$pid"; lab_wait_gone "$pid" 10
  echo "$name: kill -9 rackboot ($pid) at node50's $when; down for ${down} s" >&2
  sleep "$down"
  ( cd "$LAB_WORK/server" && exec ip netns exec "$NS_PROV" "$BIN" serve --config "$CONF" ) \
    </dev/null >>"$LAB_WORK/logs/server.log" 2>&1 &
  lab_realpid $! "$(basename "$BIN")" > "$LAB_WORK/run/server.pid"
  for _ in $(seq 100); do rb runs list >/dev/null 2>&1 && break; sleep 0.1; done
  echo "$id"
}

if want bios-disk || want inspect || want bmc-down || want stage-fails || want kill9-resume || want kill9-kernel || want daemon-down || want two-at-once || want unknown-mac; then
  if lab bios 2; then
    if want bios-disk; then
      if reimage_case bios-disk node50; then
        id=$(cat "$OUT/bios-disk.id")
        # The BMC's boot device (disk, set at the callback) holds for the installer's own
        # reboot (VM_RESET=cold): no network boot after the install.
        if ! grep -q "rebooted straight to the local disk" "$OUT/bios-disk.out"; then
          fail bios-disk "the reboot did not go straight to the disk"
        elif ! lab_ssh 0 cat /etc/rig-provisioned 2>/dev/null | grep -q "booted-from=disk"; then
          fail bios-disk "machine did not come up from its disk"
        # The serial console through the BMC's SOL: the run's console.log has the whole run,
        # firmware to disk boot (sol-relay.py keeps ipmi_sim's SOL connected across the QEMU
        # restarts of the power cycle and the installer's cold reboot).
        elif ! rb runs logs "$id" console > "$OUT/bios-disk.console" 2>&1 \
            || ! grep -q "serial console open" "$OUT/bios-disk.console" \
            || ! grep -q "SeaBIOS" "$OUT/bios-disk.console" \
            || ! grep -q "RIG: .*install: callback ok" "$OUT/bios-disk.console" \
            || ! grep -q "RIG: .*local disk boot" "$OUT/bios-disk.console"; then
          fail bios-disk "the run's serial console log lacks the guest's boot lines ($OUT/bios-disk.console)"
        else
          pass bios-disk "power-on->SSH $(ssh_time "$id") s, straight to disk after the install, $(grep -c . "$OUT/bios-disk.console") console lines (run $id)"
        fi
      fi
    fi
    # Hardware inspection: node51 netboots the inspect profile's script, which reports its
    # facts; the run ends there and the BMC powers the machine off. The facts must match how
    # up.sh started the VM (memory VM_MEM=512 MiB less the kernel's own, disk 256M, its MAC,
    # BIOS firmware).
    if want inspect; then
      t0=$(lab_now)
      rb inspect node51 --wait --timeout 5m > "$OUT/inspect.out" 2>&1; rc=$?
      dt=$(lab_since "$t0"); cat "$OUT/inspect.out"
      rb systems show node51 --json > "$OUT/inspect.json" 2>&1
      rb systems show node51 > "$OUT/inspect.txt" 2>&1
      why=$(python3 - "$OUT/inspect.json" "$(lab_node_mac 1)" <<'PY'
import json, sys
v = json.load(open(sys.argv[1])); f = (v.get("facts") or {}).get("facts") or {}
bad = []
if not 256 <= (f.get("memory_mib") or 0) <= 512: bad.append("memory_mib %r" % f.get("memory_mib"))
if not any(d["name"] == "vda" and d["size_bytes"] == 256 << 20 for d in f.get("disks", [])): bad.append("disks %r" % f.get("disks"))
if not any(n["mac"] == sys.argv[2] for n in f.get("nics", [])): bad.append("nics %r" % f.get("nics"))
if f.get("firmware") != "bios": bad.append("firmware %r" % f.get("firmware"))
print("; ".join(bad))
PY
)
      off=""; for _ in $(seq 50); do [ "$(lab_power_state 1)" = off ] && { off=1; break; }; sleep 0.2; done
      if [ $rc != 0 ]; then
        fail inspect "rackboot inspect exit $rc"
      elif [ -n "$why" ]; then
        fail inspect "facts do not match the VM: $why ($OUT/inspect.json)"
      elif [ -z "$off" ]; then
        fail inspect "the machine was not powered off after its report"
      else
        pass inspect "facts in ${dt}s from the request: $(grep -E '^facts\.(memory|disk|nic|firmware) ' "$OUT/inspect.txt" | sed 's/  */ /g' | paste -sd ';'), powered off"
      fi
    fi
    if want bmc-down; then
      t0=$(lab_now)
      rb reimage node53 --wait > "$OUT/bmc-down.out" 2>&1; rc=$?
      dt=$(lab_since "$t0"); cat "$OUT/bmc-down.out"
      if [ $rc = 1 ] && grep -q "power: BMC unreachable" "$OUT/bmc-down.out"; then
        # the lock is released: a new request is accepted (and fails the same way)
        if rb reimage node53 > "$OUT/bmc-down-again.out" 2>&1; then
          pass bmc-down "failed in power phase after ${dt}s, lock released"
          rb runs cancel "$(grep -o 'run-[0-9]*-[0-9a-f]*' "$OUT/bmc-down-again.out" | head -1)" >/dev/null 2>&1
        else
          fail bmc-down "second request refused: $(cat "$OUT/bmc-down-again.out")"
        fi
      else
        fail bmc-down "rc=$rc"
      fi
    fi
    if want stage-fails; then
      rb reimage node50 --profile lab-disk-failing --wait --junit "$OUT/stage-fails.xml" > "$OUT/stage-fails.out" 2>&1; rc=$?
      cat "$OUT/stage-fails.out"
      if [ $rc = 1 ] && grep -q "stage must-fail failed" "$OUT/stage-fails.out" \
         && grep -q "| checking /etc/nonexistent" "$OUT/stage-fails.out" \
         && grep -q '<failure message="stage must-fail failed' "$OUT/stage-fails.xml"; then
        pass stage-fails "exit 1, stage log shown, JUnit failure"
      else
        fail stage-fails "rc=$rc"
      fi
    fi
    if want kill9-resume; then
      # Watch the event stream and kill -9 the daemon the moment the run enters "install"
      # (the installer has its config and is writing the disk: 0.4 s in this lab).
      rm -f "$OUT/events.txt"
      ip netns exec "$NS_PROV" timeout 120 curl -sN -H "$(auth)" http://127.0.0.1:9080/api/v1/events > "$OUT/events.txt" 2>/dev/null &
      ev_pid=$!
      sleep 0.3
      id=$(rb reimage node50 --json | run_json_id)
      ok=0; st=""
      for _ in $(seq 2400); do
        if grep -q "\"run\":\"$id\".*\"to\":\"install\"" "$OUT/events.txt" 2>/dev/null; then ok=1; st=install; break; fi
        sleep 0.02
      done
      kill "$ev_pid" 2>/dev/null
      if [ $ok = 1 ]; then
        pid=$(cat "$LAB_WORK/run/server.pid")
        kill -9 "$pid"; lab_wait_gone "$pid" 10
        echo "kill -9 rackboot ($pid) in phase $st; starting it again"
        ( cd "$LAB_WORK/server" && exec ip netns exec "$NS_PROV" "$BIN" serve --config "$CONF" ) \
          </dev/null >>"$LAB_WORK/logs/server.log" 2>&1 &
        lab_realpid $! "$(basename "$BIN")" > "$LAB_WORK/run/server.pid"
        for _ in $(seq 100); do rb runs list >/dev/null 2>&1 && break; sleep 0.1; done
        rb runs wait "$id" --timeout 10m > "$OUT/kill9-resume.out" 2>&1; rc=$?
        cat "$OUT/kill9-resume.out"
        if [ $rc = 0 ] && grep -q "resumed in phase install" "$OUT/kill9-resume.out"; then
          pass kill9-resume "killed in phase $st, resumed and succeeded (run $id)"
        else
          fail kill9-resume "rc=$rc"
        fi
      else
        fail kill9-resume "run never reached install"
      fi
    fi
    if want kill9-kernel; then
      # Nobody touches the machine: iPXE's retries see the restarted daemon.
      con="$LAB_WORK/node0/logs/console.log"; lines0=$(wc -l < "$con" 2>/dev/null || echo 0)
      if id=$(kill_at kill9-kernel 0 script); then
        rb runs wait "$id" --timeout 10m > "$OUT/kill9-kernel.out" 2>&1; rc=$?
        cat "$OUT/kill9-kernel.out"
        retried=$(tail -n +"$((lines0 + 1))" "$con" | grep -a -c "download failed (try" || true)
        if [ $rc != 0 ]; then
          fail kill9-kernel "rc=$rc"
        elif grep -q "boot retry" "$OUT/kill9-kernel.out"; then
          fail kill9-kernel "needed a power-cycle: the iPXE retries did not carry it"
        elif [ "${retried:-0}" = 0 ]; then
          fail kill9-kernel "no retry on the console: the kill missed the download"
        else
          pass kill9-kernel "killed during the kernel download; $retried iPXE retr(y/ies) on the console, SSH $(ssh_time "$id") s after DHCP, no power-cycle (run $id)"
        fi
      else
        fail kill9-kernel "node50 never fetched its script"
      fi
    fi
    if want daemon-down; then
      # Down (30 s) from node50's first DHCP answer: its firmware cannot load iPXE, gives up and
      # boots the old disk; the run's kernel deadline (40 s in lab-disk-retry) power-cycles it
      # into a fresh netboot once rackboot is back.
      if id=$(kill_at daemon-down 30 dhcp lab-disk-retry); then
        rb runs wait "$id" --timeout 10m > "$OUT/daemon-down.out" 2>&1; rc=$?
        cat "$OUT/daemon-down.out"
        if [ $rc = 0 ] && grep -q "power-cycling again (boot retry 1 of" "$OUT/daemon-down.out"; then
          pass daemon-down "down 30 s from its DHCP; the engine's boot retry brought node50 back to SSH (run $id)"
        else
          fail daemon-down "rc=$rc"
        fi
      else
        fail daemon-down "node50 never fetched its script"
      fi
    fi
    if want two-at-once; then
      rb reimage node50 node51 --wait --junit "$OUT/two-at-once.xml" --timeout 15m > "$OUT/two-at-once.out" 2>&1; rc=$?
      cat "$OUT/two-at-once.out"
      n=$(grep -c "SUCCEEDED" "$OUT/two-at-once.out")
      if [ $rc = 0 ] && [ "$n" = 2 ]; then pass two-at-once "both succeeded"; else fail two-at-once "rc=$rc succeeded=$n"; fi
    fi
    if want unknown-mac; then
      # A host not in the inventory, on the lab bridge: no lease in reservations mode.
      ip netns exec "$NS_RACK" ip link add rbunk0 type veth peer name rbunk1
      ip netns exec "$NS_RACK" ip link set rbunk0 address 52:54:00:99:99:99 up
      ip netns exec "$NS_RACK" ip link set rbunk1 master br0 up
      if ip netns exec "$NS_RACK" busybox udhcpc -i rbunk0 -n -q -t 3 -T 1 -s /bin/true > "$OUT/unknown-mac.out" 2>&1; then
        fail unknown-mac "an unknown MAC got a lease"
      else
        # while a known MAC on the same wire does get one
        ip netns exec "$NS_RACK" ip link set rbunk0 down
        ip netns exec "$NS_RACK" ip link set rbunk0 address 52:54:00:77:00:53 up
        if ip netns exec "$NS_RACK" busybox udhcpc -i rbunk0 -n -q -t 5 -T 1 -s /bin/true >> "$OUT/unknown-mac.out" 2>&1; then
          pass unknown-mac "no answer for 52:54:00:99:99:99; node53's MAC gets its lease"
        else
          fail unknown-mac "the known MAC got no lease either"
        fi
      fi
      ip netns exec "$NS_RACK" ip link del rbunk0 2>/dev/null
    fi
  else
    fail lab-bios "lab did not come up"
  fi
fi

if want uefi-disk; then
  # A firmware that ignores the BMC's boot device on the OS's reboot (VM_RESET=warm: QEMU's
  # boot order stays the power-on one, NIC first): the fallback, the local-boot script.
  if VM_RESET=warm lab uefi 1 && reimage_case uefi-disk node50; then
    if grep -q "rebooted through the network (local-boot script)" "$OUT/uefi-disk.out"; then
      pass uefi-disk "power-on->SSH $(ssh_time "$(cat "$OUT/uefi-disk.id")") s, through the local-boot script (firmware ignores the BMC on reboot)"
    else
      fail uefi-disk "the reboot did not take the local-boot script"
    fi
  fi
fi

if want uefi-norom; then
  if lab uefi 1 none && reimage_case uefi-norom node50 --profile lab; then
    tftp=$(ip netns exec "$NS_PROV" curl -s -H "$(auth)" http://127.0.0.1:9080/api/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["protocols"]["tftp"]["transfers_ok"])')
    if [ "${tftp:-0}" = 0 ]; then
      fail uefi-norom "no TFTP transfer seen ($tftp)"
    else
      pass uefi-norom "power-on->SSH $(ssh_time "$(cat "$OUT/uefi-norom.id")") s via TFTP ipxe.efi"
    fi
  fi
fi

if want uefi-sb-unsigned; then
  # The negative control: unsigned iPXE offered to Secure Boot firmware must not start.
  con="$LAB_WORK/node0/logs/console.log"
  if [ ! -f /usr/share/OVMF/OVMF_CODE_4M.secboot.fd ] || [ ! -f /usr/share/OVMF/OVMF_VARS_4M.ms.fd ]; then
    fail uefi-sb-unsigned "no OVMF Secure Boot firmware (ovmf package)"
  elif lab uefi-sb 1 none; then
    ip netns exec "$NS_PROV" timeout 300 curl -sN -H "$(auth)" http://127.0.0.1:9080/api/v1/events > "$OUT/uefi-sb-unsigned-events.txt" 2>/dev/null &
    ev_pid=$!
    sleep 0.3
    t0=$(lab_now)
    id=$(rb reimage node50 --json | run_json_id)
    denied=""
    for _ in $(seq 900); do   # OVMF SB under TCG: PXE within ~30 s
      if grep -a -q "Access Denied" "$con" 2>/dev/null; then denied=1; break; fi
      sleep 0.2
    done
    dt=$(lab_since "$t0")
    sleep 3   # anything iPXE would have fetched after starting
    kill "$ev_pid" 2>/dev/null
    rb runs cancel "$id" >/dev/null 2>&1
    if [ -z "$denied" ]; then
      fail uefi-sb-unsigned "no 'Access Denied' on the console within $dt s (console: $(lab_console 0))"
    elif ! grep 'transfer complete' "$LAB_WORK/logs/server.log" | grep -q 'ipxe.efi'; then
      fail uefi-sb-unsigned "ipxe.efi was never transferred: the refusal is not about it"
    elif grep -q '"what":"script"' "$OUT/uefi-sb-unsigned-events.txt"; then
      fail uefi-sb-unsigned "iPXE fetched a script: the unsigned binary ran"
    else
      pass uefi-sb-unsigned "ipxe.efi sent over TFTP, refused by the firmware ($(grep -a -m1 -o 'failed to load Boot.*' "$con" | head -c 120)) ${dt} s after the request; no script fetched"
    fi
  else
    fail uefi-sb-unsigned "lab did not come up"
  fi
fi

if want uefi-sb; then
  con="$LAB_WORK/node0/logs/console.log"
  if [ ! -f "$LAB_FIRMWARE/grub/bootx64.efi" ] || [ ! -f "$LAB_FIRMWARE/grub/grubx64.efi" ]; then
    fail uefi-sb "no $LAB_FIRMWARE/grub/{bootx64,grubx64}.efi (scripts/fetch-firmware.sh)"
  elif LAB_NODE50_PROFILE=lab-sb lab uefi-sb 1 none && reimage_case uefi-sb node50; then
    id=$(cat "$OUT/uefi-sb.id")
    slog="$LAB_WORK/logs/server.log"
    st=$(ip netns exec "$NS_PROV" curl -s -H "$(auth)" http://127.0.0.1:9080/api/v1/status | python3 -c 'import json,sys; t=json.load(sys.stdin)["protocols"]["tftp"]; print(t["not_found_probe"])')
    missing=""
    for f in grub/bootx64.efi grub/grubx64.efi grub/grub.cfg grub/grub.cfg-52:54:00:77:00:50 vmlinuz initrd.img; do
      grep 'transfer complete' "$slog" | grep -q -- "$f" || missing+=" $f"
    done
    if [ -n "$missing" ]; then
      fail uefi-sb "not transferred over TFTP:$missing"
    elif [ "$(grep -a -c -i "secure boot enabled" "$con")" -lt 2 ]; then
      # once for the installer (network), once for the installed system (disk)
      fail uefi-sb "the kernel did not report Secure Boot enabled on both boots"
    elif ! grep -q "rebooted straight to the local disk" "$OUT/uefi-sb.out"; then
      fail uefi-sb "the reboot did not go straight to the disk"
    elif ! lab_ssh 0 cat /etc/rig-provisioned 2>/dev/null | grep -q "booted-from=disk"; then
      fail uefi-sb "machine did not come up from its disk"
    else
      pass uefi-sb "power-on->SSH from disk $(ssh_time "$id") s; shim -> GRUB -> grub.cfg-<mac> -> signed kernel over TFTP, installer, then shim -> GRUB -> signed kernel from the disk, Secure Boot enabled on both boots, $st probe(s) answered not found (run $id)"
    fi
  fi
fi

if want inspect-discovered; then
  if LAB_INSPECT_DISCOVERED=1 VM_RESET=warm lab bios 2; then
    mac=$(lab_node_mac 1)
    if grep -q "$mac" "$CONF/systems.toml"; then
      fail inspect-discovered "node51 is still in systems.toml"
    else
      t0=$(lab_now)
      lab_ipmi 1 chassis bootdev pxe >/dev/null
      lab_ipmi 1 chassis power on >/dev/null
      got=""
      for _ in $(seq 240); do   # bounded: 240 s
        rb discovered --json > "$OUT/inspect-discovered.json" 2>/dev/null
        if python3 - "$OUT/inspect-discovered.json" "$mac" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
sys.exit(0 if any(d["mac"] == sys.argv[2] and d.get("facts") for d in v) else 1)
PY
        then got=1; break; fi
        sleep 1
      done
      dt=$(lab_since "$t0")
      why=$(python3 - "$OUT/inspect-discovered.json" "$mac" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
f = next((d.get("facts") or {} for d in v if d["mac"] == sys.argv[2]), {})
bad = []
if not 256 <= (f.get("memory_mib") or 0) <= 512: bad.append("memory_mib %r" % f.get("memory_mib"))
if not any(d["name"] == "vda" and d["size_bytes"] == 256 << 20 for d in f.get("disks", [])): bad.append("disks %r" % f.get("disks"))
if not any(n["mac"] == sys.argv[2] for n in f.get("nics", [])): bad.append("nics %r" % f.get("nics"))
if f.get("firmware") != "bios": bad.append("firmware %r" % f.get("firmware"))
print("; ".join(bad))
PY
)
      off=""; for _ in $(seq 60); do [ "$(lab_power_state 1)" = off ] && { off=1; break; }; sleep 1; done
      rb discovered > "$OUT/inspect-discovered.txt" 2>&1
      if [ -z "$got" ]; then
        fail inspect-discovered "no facts for $mac within 240 s (console: $(lab_console 1))"
      elif [ -n "$why" ]; then
        fail inspect-discovered "facts do not match the VM: $why ($OUT/inspect-discovered.json)"
      elif [ -z "$off" ]; then
        fail inspect-discovered "the machine did not power itself off after its report"
      else
        pass inspect-discovered "facts of an unknown MAC in ${dt}s from power-on: $(grep -F "$mac" "$OUT/inspect-discovered.txt" | grep -o '[0-9]* CPUs*, .*' | sed 's/ *$//'), powered itself off"
      fi
    fi
  else
    fail inspect-discovered "lab did not come up"
  fi
fi

if want proxy; then
  # The site's own DHCP server hands out addresses (node50 has a host entry, as a site would
  # give a lab machine); it knows nothing of network boot. rackboot answers only with
  # ProxyDHCP offers (port 67 and 4011): the iPXE ROM must combine the two.
  if LAB_DHCP_MODE=proxy lab bios 1; then
    ip netns exec "$NS_RACK" dnsmasq --port=0 --user=root --interface=br0 --bind-interfaces \
      --dhcp-range=10.77.0.100,10.77.0.149,255.255.255.0,10m \
      --dhcp-host="$(lab_node_mac 0),$(lab_node_ip 0)" --dhcp-authoritative \
      --dhcp-leasefile="$OUT/site-dhcp.leases" --pid-file="$LAB_WORK/run/site-dhcp.pid" \
      --log-dhcp --log-facility="$OUT/site-dhcp.log"
    if reimage_case proxy node50; then
      id=$(cat "$OUT/proxy.id")
      proxied=$(ip netns exec "$NS_PROV" curl -s -H "$(auth)" http://127.0.0.1:9080/api/v1/status \
        | python3 -c 'import json,sys; d=json.load(sys.stdin)["protocols"]["dhcp"]; print(d["proxy"], d["offers"] + d["acks"])')
      if ! grep -q "DHCPACK(br0) $(lab_node_ip 0)" "$OUT/site-dhcp.log"; then
        fail proxy "the site DHCP server never gave node50 its address"
      elif [ "${proxied%% *}" = 0 ] || [ "${proxied##* }" != 0 ]; then
        fail proxy "rackboot proxy/address replies: $proxied (want >0 / 0)"
      elif ! lab_ssh 0 cat /etc/rig-provisioned 2>/dev/null | grep -q "booted-from=disk"; then
        fail proxy "machine did not come up from its disk"
      else
        pass proxy "power-on->SSH $(ssh_time "$id") s; address from the site server, boot from rackboot's ProxyDHCP (${proxied%% *} proxy replies)"
      fi
    fi
  else
    fail proxy "lab did not come up"
  fi
fi

if want arm64; then
  if [ ! -f "$LAB_FIRMWARE/arm64/ipxe.efi" ]; then
    fail arm64 "no $LAB_FIRMWARE/arm64/ipxe.efi (scripts/fetch-firmware.sh)"
  elif lab arm64 1 none; then
    ip netns exec "$NS_PROV" timeout 400 curl -sN -H "$(auth)" http://127.0.0.1:9080/api/v1/events > "$OUT/arm64-events.txt" 2>/dev/null &
    ev_pid=$!
    sleep 0.3
    t0=$(lab_now)
    id=$(rb reimage node50 --profile lab --json | run_json_id)
    got=""
    for _ in $(seq 1500); do   # AAVMF under TCG takes a while to reach PXE: up to 300 s
      if grep -q 'what: Initrd' "$OUT/arm64-events.txt" 2>/dev/null; then got=1; break; fi
      sleep 0.2
    done
    dt=$(lab_since "$t0")
    kill "$ev_pid" 2>/dev/null
    rb runs cancel "$id" >/dev/null 2>&1
    tftp=$(ip netns exec "$NS_PROV" curl -s -H "$(auth)" http://127.0.0.1:9080/api/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["protocols"]["tftp"]["transfers_ok"])')
    if [ -z "$got" ]; then
      fail arm64 "no initrd fetched within 300 s (console: $(lab_console 0))"
    elif ! grep -q 'arch: Some(EfiArm64)' "$OUT/arm64-events.txt"; then
      fail arm64 "no DHCP answer for arch 11 (EfiArm64) in the event stream"
    elif ! grep -q 'ipxe: true' "$OUT/arm64-events.txt"; then
      fail arm64 "iPXE never asked (no DHCP answer to an iPXE client)"
    elif [ "${tftp:-0}" = 0 ] || ! grep 'transfer complete' "$LAB_WORK/logs/server.log" | grep -q 'arm64/ipxe.efi'; then
      fail arm64 "no TFTP transfer of arm64/ipxe.efi"
    elif ! grep -q 'Script { local: false }' "$OUT/arm64-events.txt" || ! grep -q 'what: Kernel' "$OUT/arm64-events.txt"; then
      fail arm64 "script or kernel not served"
    else
      pass arm64 "AAVMF PXE (arch 11) -> TFTP arm64/ipxe.efi -> iPXE arm64 -> script, kernel, initrd ${dt} s after the request"
    fi
  else
    fail arm64 "lab did not come up"
  fi
fi

echo
echo "== lab results ($OUT)"
printf '%s\n' "${results[@]}"
exit $failed
