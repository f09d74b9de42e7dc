#!/usr/bin/env python3
"""Simulated network segment for the rackboot HA drill: machines and their BMCs.

Runs as root inside one network namespace (the "machine" side of the segment)
and plays, for every machine of `machines.json`:

- a Redfish BMC (HTTP, basic auth, any credentials) at the machine's `bmc_ip`:
  `ComputerSystem` with `PowerState`, `Boot.BootSourceOverride*` (PATCH) and
  the `#ComputerSystem.Reset` action, applied at once;
- the machine itself, one boot thread per power-on: the boot order (one-time
  or continuous override, else the disk if installed, else the network);
  a network boot as iPXE does it (DHCP with iPXE's options, the script from
  the DHCP boot file over HTTP, a small iPXE interpreter for rackboot's
  scripts, kernel and initrd downloads); the "installer" (fetch `ks=`, wipe
  the disk, wait `--install-secs`, POST `rig.done=`, reboot); a disk boot
  (DHCP as the OS, the leased address added to the interface, an SSH-like
  banner on the service port);
- MACs outside the inventory doing a plain DHCP now and then, re-requesting
  their address (INIT-REBOOT) to catch one pool address given to two MACs.

What it does NOT simulate: the PXE ROM and TFTP stage (machines start as
iPXE), a real kernel or installer (downloads are read and thrown away; the
config is not interpreted), lease renewal, ARP/L2 details (every DHCP message
goes through one UDP socket on port 68, so its IP source is an address of the
interface, not 0.0.0.0), IPMI, TLS.

Logs (JSON lines, flushed per line) go to --log DIR: bmc.jsonl, dhcp.jsonl,
machine.jsonl; DIR/ready is written once the BMCs and DHCP listen.
"""
import argparse
import http.client
import http.server
import json
import os
import queue
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse

LOCK = threading.RLock()        # every machine's power/boot/disk state
STOP = threading.Event()        # set on SIGTERM/SIGINT or --seconds
ARGS = None
LOG = None
DHCP = None
BMCS = {}                       # bmc_ip -> Machine

HTTP_TIMEOUT = 5.0              # one machine-side HTTP socket operation
MAX_STATEMENTS = 500            # per iPXE script run
MAX_CHAIN = 4                   # nested `chain`s
MAX_BOOTS = 10                  # boots (installer reboots) per power-on
DISCOVER_WAITS = (1, 2, 4, 4)   # seconds after each DISCOVER
RESET_TYPES = ["On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "PowerCycle"]
BOOT_VALUES = {"BootSourceOverrideTarget": ("None", "Pxe", "Hdd"),
               "BootSourceOverrideEnabled": ("Disabled", "Once", "Continuous"),
               "BootSourceOverrideMode": ("Legacy", "UEFI")}
SYS = "/redfish/v1/Systems/1"
RESET = SYS + "/Actions/ComputerSystem.Reset"


class Log:
    """Three JSON-lines files, one line per record, flushed at once."""

    def __init__(self, d):
        self.lock = threading.Lock()
        self.files = {n: open(os.path.join(d, n + ".jsonl"), "a", buffering=1)
                      for n in ("bmc", "dhcp", "machine")}

    def write(self, which, /, **rec):
        line = json.dumps({"t": time.time(), **rec}, separators=(",", ":"))
        with self.lock:
            f = self.files.get(which)
            if f:
                f.write(line + "\n")
                f.flush()

    def close(self):
        with self.lock:
            for f in self.files.values():
                f.close()
            self.files = {}


def ip_addr(op, ip):
    """`ip addr add|del IP/32 dev IFACE` ("exists"/"cannot assign" ignored)."""
    subprocess.run(["ip", "addr", op, f"{ip}/32", "dev", ARGS.iface],
                   capture_output=True, timeout=10, check=False)


def http_request(method, url, src, alive, keep=False, ua="iPXE/1.21.1"):
    """One HTTP request from address `src`: (True, body) when the status is
    2xx (GET: 200) and the whole body was read, else (False, reason)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        return False, f"unsupported URL {url!r}"
    if not alive():
        return False, "powered off"
    path = (u.path or "/") + (("?" + u.query) if u.query else "")
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=HTTP_TIMEOUT,
                                      source_address=(src, 0) if src else None)
    try:
        conn.request(method, path, body=b"" if method == "POST" else None,
                     headers={"User-Agent": ua})
        r = conn.getresponse()
        chunks, n = [], 0
        for _ in range(200000):              # 64 KiB reads: at most ~12 GiB
            b = r.read(65536)
            if not b:
                break
            n += len(b)
            if keep and n <= (1 << 20):
                chunks.append(b)
            if not alive():
                return False, "powered off"
        ok = r.status == 200 if method == "GET" else 200 <= r.status < 300
        return (True, b"".join(chunks)) if ok else (False, f"HTTP {r.status}")
    except (OSError, http.client.HTTPException) as e:
        return False, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


# ---------------------------------------------------------------- DHCP client

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, ACK, NAK = 1, 2, 3, 5, 6
PRL_IPXE = bytes([1, 3, 6, 12, 15, 17, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133,
                  134, 135, 175, 203])
PRL_OS = bytes([1, 3, 6, 12, 15, 26, 28, 42, 51, 54, 58, 59, 119])


def opt(code, data):
    return bytes([code, len(data)]) + data


def dhcp_packet(hw, xid, mtype, kind, requested=None, server=None):
    """A BOOTREQUEST with the broadcast flag; `kind` "netboot" adds iPXE's options."""
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                      bytes(4), bytes(4), bytes(4), bytes(4), hw + bytes(10), b"", b"")
    o = opt(53, bytes([mtype])) + opt(57, struct.pack("!H", 1472))
    if kind == "netboot":
        o += (opt(93, b"\x00\x00") + opt(94, b"\x01\x02\x01")
              + opt(60, b"PXEClient:Arch:00000:UNDI:002001") + opt(77, b"iPXE"))
    o += opt(55, PRL_IPXE if kind == "netboot" else PRL_OS)
    if requested:
        o += opt(50, socket.inet_aton(requested))
    if server:
        o += opt(54, socket.inet_aton(server))
    pkt = hdr + MAGIC + o + b"\xff"
    return pkt + bytes(max(0, 300 - len(pkt)))


def dhcp_parse(data, src):
    """A BOOTREPLY as a dict (None if it is not one)."""
    if len(data) < 240 or data[0] != 2 or data[236:240] != MAGIC:
        return None
    opts, i = {}, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            return None
        opts.setdefault(data[i], data[i + 2:i + 2 + data[i + 1]])
        i += 2 + data[i + 1]
    mt = opts.get(53, b"\0")[0]
    sid = opts.get(54)
    bootfile = (opts.get(67) or data[108:236]).split(b"\0", 1)[0]
    return {"xid": struct.unpack("!I", data[4:8])[0], "chaddr": data[28:34], "type": mt,
            "ip": socket.inet_ntoa(data[16:20]),
            "server": socket.inet_ntoa(sid) if sid and len(sid) == 4 else None,
            "from": src[0], "file": bootfile.decode("latin-1").strip()}


class DhcpClient:
    """One UDP socket on 0.0.0.0:68 (bound to the interface) for the whole
    segment; replies are handed to the waiting transaction by xid."""

    def __init__(self, iface):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_BINDTODEVICE", 25), iface.encode())
        s.bind(("0.0.0.0", 68))
        s.settimeout(0.5)
        self.sock, self.lock, self.waiters = s, threading.Lock(), {}
        threading.Thread(target=self._recv, daemon=True, name="dhcp-recv").start()

    def _recv(self):
        while not STOP.is_set():
            try:
                data, src = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                if STOP.wait(0.2):
                    return
                continue
            m = dhcp_parse(data, src)
            with self.lock:
                q = self.waiters.get(m["xid"]) if m else None
            if q is not None:
                q.put(m)

    def _open(self):
        with self.lock:
            for _ in range(100):
                xid = random.getrandbits(32)
                if xid not in self.waiters:
                    self.waiters[xid] = queue.Queue(maxsize=64)
                    return xid, self.waiters[xid]
        raise RuntimeError("no free xid")

    def _close(self, xid):
        with self.lock:
            self.waiters.pop(xid, None)

    def _send(self, pkt):
        try:
            self.sock.sendto(pkt, ("255.255.255.255", 67))
        except OSError:
            pass

    @staticmethod
    def _wait(q, hw, types, secs, alive):
        end = time.monotonic() + secs
        while alive():
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                m = q.get(timeout=min(0.2, left))
            except queue.Empty:
                continue
            if m["chaddr"] == hw and m["type"] in types:
                return m
        return None

    def dora(self, hw, kind, alive):
        """DISCOVER/OFFER/REQUEST/ACK, at most 3 rounds (a NAK or no ACK
        starts over): the ACK, or (None, why)."""
        why = "no offer"
        for _ in range(3):
            xid, q = self._open()
            try:
                offer = None
                for wait in DISCOVER_WAITS:
                    if not alive():
                        return None, "powered off"
                    self._send(dhcp_packet(hw, xid, DISCOVER, kind))
                    offer = self._wait(q, hw, (OFFER,), wait, alive)
                    if offer or not alive():
                        break
                if not offer:
                    return None, why
                reply = None
                for _ in range(3):
                    if not alive():
                        return None, "powered off"
                    self._send(dhcp_packet(hw, xid, REQUEST, kind, offer["ip"], offer["server"]))
                    reply = self._wait(q, hw, (ACK, NAK), 2, alive)
                    if reply or not alive():
                        break
                if reply and reply["type"] == ACK:
                    return reply, ""
                why = f"NAK from {reply['server']}" if reply else f"no ACK from {offer['server']}"
            finally:
                self._close(xid)
        return None, why

    def init_reboot(self, hw, ip, alive):
        """REQUEST of a known address without a server id: ACK, "nak" or None."""
        xid, q = self._open()
        try:
            for _ in range(2):
                self._send(dhcp_packet(hw, xid, REQUEST, "unknown", ip))
                r = self._wait(q, hw, (ACK, NAK), 2, alive)
                if r:
                    return r if r["type"] == ACK else "nak"
            return None
        finally:
            self._close(xid)


def log_ack(mac, name, ack, kind):
    LOG.write("dhcp", mac=mac, name=name, ip=ack["ip"], server=ack["server"],
              **{"from": ack["from"]}, kind=kind)


# ---------------------------------------------------------------- iPXE

class Ipxe:
    """Just enough of iPXE's script engine for rackboot's scripts: `&&`/`||`
    chains, labels and goto, echo, sleep, kernel/initrd/imgfetch/chain, boot,
    sanboot, exit. A failing command ends the script (as in iPXE); `exit`
    ends the innermost script with its status (a `chain` returns it)."""

    def __init__(self, m, gen, ip):
        self.m, self.gen, self.ip, self.kernel = m, gen, ip, None
        self.vars = {"net0/mac": m.mac, "mac": m.mac, "net0/ip": ip, "ip": ip,
                     "buildarch": "i386", "platform": "pcbios"}

    def expand(self, s):
        def sub(mo):
            name, _, typ = mo.group(1).partition(":")
            v = self.vars.get(name, "")
            return {"hexhyp": v.replace(":", "-"), "hexraw": v.replace(":", "")}.get(typ, v)
        return re.sub(r"\$\{([^}]*)\}", sub, s)

    def alive(self):
        return self.m.alive(self.gen)

    def run(self, text, url, depth=0):
        """Run one script: ("end", ok) or a terminal ("boot", args) /
        ("sanboot",) / ("stale",)."""
        lines = [l.strip() for l in text.splitlines()]
        labels = {l[1:].split()[0]: i for i, l in enumerate(lines) if l.startswith(":") and l[1:].strip()}
        pc = 0
        for _ in range(MAX_STATEMENTS):
            if pc >= len(lines):
                return ("end", True)
            line, pc = lines[pc], pc + 1
            if not line or line.startswith("#") or line.startswith(":"):
                continue
            ok, process = True, True
            for toks, term in self.split(line):
                if process:
                    r = self.command(toks, url, depth)
                    if isinstance(r, tuple):
                        if r[0] == "exit":
                            return ("end", r[1])
                        if r[0] != "goto":
                            return r
                        if r[1] in labels:
                            pc = labels[r[1]]
                            break
                        ok = False
                    else:
                        ok = r
                if term is None:
                    break
                process = ok if term == "&&" else not ok
            if not ok:
                return ("end", False)
        return ("end", False)

    @staticmethod
    def split(line):
        cmd = []
        for t in line.split():
            if t in ("&&", "||"):
                yield cmd, t
                cmd = []
            else:
                cmd.append(t)
        yield cmd, None

    def command(self, toks, url, depth):
        """True/False (status) or a control tuple."""
        if not toks:
            return True
        if not self.alive():
            return ("stale",)
        c, a = toks[0], [self.expand(t) for t in toks[1:]]
        if c == "sleep":
            try:
                secs = float(a[0]) * ARGS.sleep_scale
            except (IndexError, ValueError):
                return False
            return True if self.m.pause(secs, self.gen) else ("stale",)
        if c == "goto":
            return ("goto", a[0]) if a else False
        if c == "exit":
            return ("exit", not a or a[0] in ("0", "0x0"))
        if c == "boot":
            return ("boot", self.kernel) if self.kernel is not None else False
        if c == "sanboot":
            return ("sanboot",)
        if c not in ("kernel", "initrd", "imgfetch", "module", "chain"):
            return True                       # echo, set, dhcp, imgfree, ...: nothing to do
        pos, skip = [], False
        for t in a:
            if skip:
                skip = False
            elif t in ("--name", "-n", "--timeout", "-t"):
                skip = True
            elif not t.startswith("-") or pos:
                pos.append(t)
        if not pos:
            return False
        u = urllib.parse.urljoin(url, pos[0])
        ok, body = http_request("GET", u, self.ip, self.alive, keep=(c == "chain"))
        if not self.alive():
            return ("stale",)
        if not ok:
            self.m.event("download-failed", f"{c} {u}: {body}")
            return False
        if c == "chain":
            self.m.event("script", u)
            if depth >= MAX_CHAIN:
                return False
            r = self.run(body.decode("utf-8", "replace"), u, depth + 1)
            return r[1] if r[0] == "end" else r
        if c == "kernel":
            self.kernel = pos[1:]
            self.m.event("kernel", u)
        elif c in ("initrd", "module"):
            self.m.event("initrd", u)
        return True


# ---------------------------------------------------------------- machines

class Machine:
    def __init__(self, name, mac, bmc_ip, ip=None):
        self.name, self.mac, self.bmc_ip = name, mac.lower(), bmc_ip
        self.hw = bytes.fromhex(self.mac.replace(":", ""))
        self.power, self.gen, self.installed = "On", 0, True
        self.boot = {"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled",
                     "BootSourceOverrideMode": "Legacy"}
        self.ip = ip                  # last leased address
        self.addr = None              # address this machine holds on the interface
        self.listener = None
        self.net = threading.Lock()   # address + listener changes; taken before LOCK

    def event(self, ev, detail=""):
        LOG.write("machine", mac=self.mac, name=self.name, event=ev, detail=detail)

    def alive(self, gen):
        with LOCK:
            return self.gen == gen and not STOP.is_set()

    def pause(self, secs, gen):
        """Sleep in slices; False as soon as this boot is stale."""
        end = time.monotonic() + max(0.0, secs)
        while self.alive(gen):
            left = end - time.monotonic()
            if left <= 0:
                return True
            STOP.wait(min(0.1, left))
        return False

    # -- power (called by the BMC) --
    def power_on(self, why):
        with self.net:
            with LOCK:
                self.gen += 1
                gen, self.power = self.gen, "On"
            self._down()
        self.event("power-on", why)
        threading.Thread(target=self.run, args=(gen,), daemon=True, name=f"boot-{self.name}").start()

    def power_off(self, why):
        with self.net:
            with LOCK:
                self.gen += 1
                self.power = "Off"
            self._down()
        self.event("power-off", why)

    def _down(self):
        """Service port closed, address gone (self.net held)."""
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        if self.addr is not None and self.addr not in BMCS:
            ip_addr("del", self.addr)
        self.addr = None

    def _hold(self, ip, gen):
        """Put `ip` on the interface for this boot (self.net held); False if stale."""
        if not self.alive(gen):
            return False
        if self.addr != ip:
            if self.addr is not None and self.addr not in BMCS:
                ip_addr("del", self.addr)
            ip_addr("add", ip)
            self.addr = ip
        return True

    # -- a boot (one thread per power-on) --
    def run(self, gen, post=None):
        for _ in range(MAX_BOOTS):
            if not self.pause(ARGS.post_secs if post is None else post, gen):
                return
            post = None
            with LOCK:
                tgt = self.boot["BootSourceOverrideTarget"]
                en = self.boot["BootSourceOverrideEnabled"]
                if en == "Once":
                    self.boot.update(BootSourceOverrideTarget="None", BootSourceOverrideEnabled="Disabled")
            over = tgt if en in ("Once", "Continuous") and tgt in ("Pxe", "Hdd") else None
            why = f"override {tgt}/{en}" if over else "boot order"
            outcome = "stranded"
            for dev in (["net", "disk"] if over == "Pxe" else ["disk", "net"]):
                with LOCK:
                    installed = self.installed
                if dev == "disk":
                    if installed:
                        return self.disk_boot(gen, why)
                    continue
                outcome, detail = self.netboot(gen, why)
                if outcome in ("reboot", "stop"):
                    break
                with LOCK:
                    installed = self.installed
                if outcome == "sanboot" and installed:
                    return self.disk_boot(gen, "sanboot")
                nxt = "next device: disk" if dev == "net" and over == "Pxe" and installed else "stranded"
                if self.alive(gen):
                    self.event("exit", f"{detail}; {nxt}")
            if outcome != "reboot":
                return

    def netboot(self, gen, why):
        """One network boot: ("reboot"|"stop"|"exit"|"sanboot", detail)."""
        self.event("netboot", why)
        alive = lambda: self.alive(gen)
        ack, fail = DHCP.dora(self.hw, "netboot", alive)
        if not alive():
            return "stop", "powered off"
        if not ack:
            self.event("no-dhcp", f"netboot: {fail}")
            return "stop", fail
        log_ack(self.mac, self.name, ack, "netboot")
        with LOCK:
            self.ip = ack["ip"]
        with self.net:
            if not self._hold(ack["ip"], gen):
                return "stop", "powered off"
        url = ack["file"]
        for i in range(3):
            ok, body = http_request("GET", url, ack["ip"], alive, keep=True)
            if ok or not alive() or i == 2 or not self.pause(1.0, gen):
                break
        if not alive():
            return "stop", "powered off"
        if not ok:
            self.event("script-failed", f"{url}: {body}")
            return "stop", "no script"
        self.event("script", url)
        r = Ipxe(self, gen, ack["ip"]).run(body.decode("utf-8", "replace"), url)
        if r[0] == "stale":
            return "stop", "powered off"
        if r[0] == "end":
            return "exit", "iPXE exit" + ("" if r[1] else " (error)")
        if r[0] == "sanboot":
            return "sanboot", "sanboot"
        return self.install(gen, ack["ip"], r[1])

    def install(self, gen, ip, args):
        """The installer the kernel would run: config, wipe, callback."""
        alive = lambda: self.alive(gen)
        kv = dict(a.split("=", 1) for a in args if "=" in a)
        ks = kv.get("ks") or kv.get("inst.ks") or kv.get("url")
        done = kv.get("rig.done")
        if not ks:
            self.event("download-failed", "no ks= in the kernel arguments")
            return "stop", "no config"
        for i in range(5):
            ok, why = http_request("GET", ks, ip, alive, ua="drill-installer")
            if ok or not alive() or i == 4 or not self.pause(2.0, gen):
                break
        if not alive():
            return "stop", "powered off"
        if not ok:
            self.event("download-failed", f"config {ks}: {why}")
            return "stop", "no config"
        self.event("config", ks)
        with LOCK:
            self.installed = False
        if not self.pause(ARGS.install_secs, gen):
            return "stop", "powered off"
        if not done:
            self.event("done-failed", "no rig.done= in the kernel arguments")
            return "stop", "no callback"
        for i in range(5):
            ok, why = http_request("POST", done, ip, alive, ua="drill-installer")
            if ok or not alive() or i == 4 or not self.pause(2.0, gen):
                break
        if not alive():
            return "stop", "powered off"
        if not ok:
            self.event("done-failed", f"{done}: {why}")
            return "stop", "callback failed"
        with LOCK:
            self.installed = True
        self.event("done", done)
        return "reboot", "installed"

    def disk_boot(self, gen, why):
        self.event("disk-boot", why)
        alive = lambda: self.alive(gen)
        ack, fail = DHCP.dora(self.hw, "os", alive)
        if not alive():
            return
        with LOCK:
            if ack:
                self.ip = ack["ip"]
            ip = self.ip
        if ack:
            log_ack(self.mac, self.name, ack, "os")
        elif ip:
            self.event("no-dhcp", f"os, using last ip ({fail})")
        else:
            self.event("no-dhcp", f"os, no address ({fail})")
            return
        with self.net:
            if not self._hold(ip, gen):
                return
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((ip, ARGS.svc_port))
                s.listen(64)
            except OSError as e:
                s.close()
                self.event("no-dhcp", f"os: cannot listen on {ip}:{ARGS.svc_port}: {e}")
                return
            s.settimeout(0.5)
            self.listener = s
        threading.Thread(target=self._serve, args=(s, gen), daemon=True, name=f"svc-{self.name}").start()
        self.event("up", f"{ip}:{ARGS.svc_port}")

    def _serve(self, s, gen):
        while self.alive(gen):
            try:
                c, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                c.settimeout(2)
                c.sendall(b"SSH-2.0-drill\r\n")
            except OSError:
                pass
            finally:
                c.close()


def unknown_loop(mac, every):
    """A MAC outside the inventory: a plain DHCP every `every` s (±20 %),
    re-requesting its address first once it has one."""
    hw, ip = bytes.fromhex(mac.replace(":", "")), None
    alive = lambda: not STOP.is_set()
    nxt = time.monotonic() + random.uniform(0, every)
    while not STOP.wait(max(0.0, nxt - time.monotonic())):
        ack = None
        if ip:
            r = DHCP.init_reboot(hw, ip, alive)
            if r == "nak":
                ip = None
            elif r:
                ack = r
        if not ack:
            ack, _ = DHCP.dora(hw, "unknown", alive)
        if ack and not STOP.is_set():
            ip = ack["ip"]
            log_ack(mac, None, ack, "unknown")
        nxt = time.monotonic() + every * random.uniform(0.8, 1.2)


# ---------------------------------------------------------------- Redfish BMCs

class Bmc(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "drill-bmc/1"
    timeout = 30                      # idle keep-alive connections (ureq drops its own after 15 s)

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.handle_one("GET")

    def do_POST(self):
        self.handle_one("POST")

    def do_PATCH(self):
        self.handle_one("PATCH")

    def reply(self, code, obj=None, extra=()):
        body = json.dumps(obj).encode() if obj is not None else b""
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        if code != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, msg):
        self.reply(code, {"error": {"code": "Base.1.8.GeneralError", "message": msg}})

    def handle_one(self, method):
        n = int(self.headers.get("Content-Length") or 0)
        if n > (1 << 20):
            self.close_connection = True
            return self.error(413, "body too large")
        raw = self.rfile.read(n) if n > 0 else b""
        m = BMCS.get(self.connection.getsockname()[0])
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        if m is None:
            return self.error(404, "no BMC at this address")
        if method == "GET" and path == "/redfish/v1":
            return self.reply(200, {"@odata.id": "/redfish/v1", "Id": "RootService", "Name": "drill BMC",
                                    "RedfishVersion": "1.6.0", "Systems": {"@odata.id": "/redfish/v1/Systems"}})
        if not self.headers.get("Authorization", "").startswith("Basic "):
            return self.reply(401, {"error": {"code": "Base.1.8.NoValidSession",
                                              "message": "authentication required"}},
                              [("WWW-Authenticate", 'Basic realm="drill"')])
        if method == "GET" and path == "/redfish/v1/Systems":
            return self.reply(200, {"@odata.id": "/redfish/v1/Systems", "Name": "Systems",
                                    "Members@odata.count": 1, "Members": [{"@odata.id": SYS}]})
        if method == "GET" and path == SYS:
            return self.reply(200, system_json(m))
        try:
            body = json.loads(raw or b"{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return self.error(400, "malformed JSON body")
        if method == "PATCH" and path == SYS:
            return self.patch(m, body)
        if method == "POST" and path == RESET:
            return self.reset(m, body)
        return self.error(405 if path in (SYS, RESET, "/redfish/v1/Systems") else 404,
                          f"{method} {path} is not supported")

    def audit(self, m, op, status):
        LOG.write("bmc", bmc=m.bmc_ip, mac=m.mac, name=m.name, src=self.client_address[0],
                  ua=self.headers.get("User-Agent", ""), method=self.command, path=self.path,
                  op=op, status=status)

    def patch(self, m, body):
        boot = body.get("Boot")
        if not isinstance(boot, dict):
            return self.error(400, "only Boot can be changed")
        new = {k: v for k, v in boot.items() if k in BOOT_VALUES}
        bad = [f"{k}={v}" for k, v in new.items() if v not in BOOT_VALUES[k]]
        op = "boot:{}/{}".format(new.get("BootSourceOverrideTarget", "-"),
                                 new.get("BootSourceOverrideEnabled", "-"))
        if bad or not new:
            self.audit(m, op, 400)
            return self.error(400, "unsupported value: " + (", ".join(bad) or "no Boot property"))
        with LOCK:
            m.boot.update(new)
        self.audit(m, op, 204)
        self.reply(204)

    def reset(self, m, body):
        rt = body.get("ResetType")
        if rt not in RESET_TYPES:
            self.audit(m, str(rt), 400)
            return self.error(400, f"ResetType {rt!r} is not one of {RESET_TYPES}")
        with LOCK:
            state = m.power
        self.audit(m, rt, 204)
        who = f"{rt} from {self.client_address[0]}"
        if rt in ("ForceOff", "GracefulShutdown"):
            if state == "On":
                m.power_off(who)
        elif not (rt == "On" and state == "On"):
            m.power_on(who)
        self.reply(204)


def system_json(m):
    with LOCK:
        power, boot = m.power, dict(m.boot)
    boot["BootSourceOverrideTarget@Redfish.AllowableValues"] = list(BOOT_VALUES["BootSourceOverrideTarget"])
    return {"@odata.id": SYS, "@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem",
            "Id": "1", "Name": m.name, "PowerState": power, "Boot": boot,
            "Status": {"State": "Enabled", "Health": "OK"},
            "Actions": {"#ComputerSystem.Reset": {
                "target": RESET, "ResetType@Redfish.AllowableValues": RESET_TYPES}}}


class BmcServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


# ---------------------------------------------------------------- main

def main():
    global ARGS, LOG, DHCP
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iface", required=True)
    p.add_argument("--machines", required=True, help="machines.json")
    p.add_argument("--log", required=True, help="log directory")
    p.add_argument("--svc-port", type=int, default=22)
    p.add_argument("--bmc-port", type=int, default=8000)
    p.add_argument("--install-secs", type=float, default=1.0)
    p.add_argument("--sleep-scale", type=float, default=1.0, help="factor on iPXE `sleep N`")
    p.add_argument("--post-secs", type=float, default=1.0, help="firmware time from power-on/reboot to the first boot device")
    p.add_argument("--seconds", type=float, default=3600.0)
    ARGS = p.parse_args()
    with open(ARGS.machines) as f:
        cfg = json.load(f)
    os.makedirs(ARGS.log, exist_ok=True)
    LOG = Log(ARGS.log)
    machines = [Machine(e["name"], e["mac"], e["bmc_ip"], e.get("ip")) for e in cfg.get("machines", [])]
    BMCS.update((m.bmc_ip, m) for m in machines)
    unknown = cfg.get("unknown", [])
    DHCP = DhcpClient(ARGS.iface)
    httpd = BmcServer(("0.0.0.0", ARGS.bmc_port), Bmc)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: STOP.set())
    print(f"segment: {len(machines)} machines, {len(unknown)} unknown, bmc port {ARGS.bmc_port}", flush=True)
    for m in machines:              # powered on, installed: they boot their disk
        with LOCK:
            m.gen = 1
        m.event("power-on", "initial")
        threading.Thread(target=m.run, args=(1, random.uniform(0, ARGS.post_secs)),
                         daemon=True, name=f"boot-{m.name}").start()
    for u in unknown:
        threading.Thread(target=unknown_loop, args=(u["mac"].lower(), float(u.get("every", 5.0))),
                         daemon=True).start()
    with open(os.path.join(ARGS.log, "ready"), "w") as f:
        f.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + ARGS.seconds
    while not STOP.is_set() and time.monotonic() < deadline:
        STOP.wait(min(1.0, max(0.0, deadline - time.monotonic())))
    STOP.set()
    httpd.shutdown()
    httpd.server_close()
    for m in machines:              # leave the interface as we found it
        with m.net:
            m._down()
    LOG.close()
    print("segment: stopped", flush=True)


if __name__ == "__main__":
    main()
