#!/usr/bin/env python3
"""Build a per-phase timeline of one machine's boot from the lab's logs (from the reference rig).

usage: timeline.py LAB_WORK NODE_DIR VM_IP T_POWER_ON [T_END]
Sources (all epoch-stamped): NODE_DIR/logs/console.log (serial, stamped per line by
vm-start.sh), NODE_DIR/logs/{bmc-chassis,vm-start}.log, LAB_WORK/logs/http.log (stand-in HTTP),
LAB_WORK/logs/prov.pcap (tcpdump in rbprov, read back with tcpdump -tt -v).
"""
import os
import re
import subprocess
import sys

work, node, vm_ip, t0 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
t_end = float(sys.argv[5]) if len(sys.argv) > 5 else float("inf")
ev = []  # (epoch, source, text)


def add(t, src, text):
    if t0 - 1 <= t <= t_end:
        ev.append((t, src, text))


# --- BMC / power ---------------------------------------------------------
p = os.path.join(node, "logs/bmc-chassis.log")
if os.path.exists(p):
    for line in open(p):
        m = re.match(r"(\d+\.\d+) (power on: qemu pid \d+)", line)
        if m:
            add(float(m.group(1)), "bmc", m.group(2))
p = os.path.join(node, "logs/vm-start.log")
if os.path.exists(p):
    for line in open(p):
        m = re.match(r"(\d+\.\d+) vm-start: power on requested", line)
        if m:
            add(float(m.group(1)), "qemu", "vm-start.sh -> exec qemu")

# --- packets ---------------------------------------------------------------
pcap = os.path.join(work, "logs/prov.pcap")
if os.path.exists(pcap):
    out = subprocess.run(["tcpdump", "-r", pcap, "-tt", "-n", "-v"],
                         capture_output=True, text=True).stdout
    pkts, cur = [], None
    for line in out.splitlines():
        m = re.match(r"^(\d+\.\d+) (.*)", line)
        if m:
            cur = [float(m.group(1)), m.group(2)]
            pkts.append(cur)
        elif cur is not None:
            cur[1] += " " + line.strip()
    seen_tftp = False
    last_tftp = None
    http_syn = 0
    for t, txt in pkts:
        dm = re.search(r"DHCP-Message \(53\), length 1: (\w+)", txt)
        if dm:
            vc = re.search(r'Vendor-Class \(60\), length \d+: "([^"]+)"', txt)
            uc = "iPXE" if re.search(r"User-Class \(77\)", txt) else ""
            add(t, "pcap", "DHCP %s %s %s" % (dm.group(1), vc.group(1) if vc else "", uc))
            continue
        if ".69: " in txt and "RRQ" in txt:
            f = re.search(r'RRQ "([^"]+)"', txt)
            add(t, "pcap", "TFTP RRQ %s" % (f.group(1) if f else ""))
            seen_tftp = True
            continue
        if seen_tftp and "UDP" in txt and not re.search(r"\.(67|68|69|546|547|623): ", txt):
            last_tftp = t
        if "Flags [S]," in txt and re.search(r"\.8080: Flags \[S\],", txt):
            http_syn += 1
            if http_syn == 1:
                if last_tftp:
                    add(last_tftp, "pcap", "TFTP last data/ack packet")
                add(t, "pcap", "first HTTP SYN to :8080")
        if re.search(re.escape(vm_ip) + r"\.22 > 10\.77\.0\.1\.\d+: Flags \[S\.\]", txt):
            add(t, "pcap", "guest :22 SYN-ACK (sshd accepting)")

# --- HTTP log -----------------------------------------------------------------
p = os.path.join(work, "logs/http.log")
if os.path.exists(p):
    for line in open(p):
        f = line.split()
        if len(f) >= 8:
            t_done, path, dur = float(f[0]), f[4], float(f[7].rstrip("ms")) / 1000
            add(t_done - dur, "http", "GET/POST %s start" % path)
            add(t_done, "http", "%s done (%s bytes, %.0f ms)" % (path, f[6], dur * 1000))

# --- serial console -----------------------------------------------------------
p = os.path.join(node, "logs/console.log")
pats = [
    (r"SeaBIOS \(version", "SeaBIOS banner"),
    (r"BdsDxe: loading Boot", "OVMF: loading boot option"),
    (r">>Start PXE over IPv4", "OVMF: Start PXE over IPv4"),
    (r"Station IP address is", "OVMF PXE: got IP"),
    (r"NBP file downloaded successfully", "OVMF PXE: NBP (ipxe.efi) downloaded"),
    (r"iPXE \(PCI .*starting execution", "iPXE ROM starts"),
    (r"iPXE initialising devices", "iPXE initialising devices"),
    (r"Configuring \(net0", "iPXE DHCP done ('Configuring ... ok')"),
    (r"boot\.ipxe : ", "iPXE got boot.ipxe"),
    (r"initrd\.img\.\.\. ok", "iPXE got initrd (line end)"),
    (r"EFI stub: ", "EFI stub"),
    (r"Linux version", "kernel: first printk (after decompress)"),
    (r"Run /init as init process", "kernel: Run /init"),
    # disk mode (VM_DISK): local boot
    (r"Booting from Hard Disk", "SeaBIOS: booting from disk"),
    (r"SYSLINUX \d", "SYSLINUX (disk) starts"),
    (r'BdsDxe: starting Boot\w+ "UEFI Misc Device', "OVMF: starting the disk boot option"),
]
if os.path.exists(p):
    seen = set()
    for line in open(p, errors="replace"):
        m = re.match(r"(\d+\.\d+) (.*)", line)
        if not m:
            continue
        t, txt = float(m.group(1)), m.group(2)
        if t < t0 - 1 or t > t_end:
            continue
        for pat, name in pats:
            if name not in seen and re.search(pat, txt):
                seen.add(name)
                add(t, "console", name)
        r = re.search(r"RIG: up=([\d.]+) (.*)", txt)
        if r:
            add(t, "console", "guest: %s (uptime %s)" % (r.group(2)[:60], r.group(1)))

ev.sort()
print("%8s %8s  %-8s %s" % ("t+[s]", "dt[s]", "source", "event"))
prev = t0
for t, src, text in ev:
    print("%8.2f %8.2f  %-8s %s" % (t - t0, t - prev, src, text))
    prev = t
