#!/usr/bin/env python3
"""Simulated network segment for the rackboot HA drill: machines and their BMCs.

Runs as root in the machine namespace. For each machine of machines.json:
- a Redfish BMC at its bmc_ip (HTTP, basic auth, any credentials): PowerState,
  Boot.BootSourceOverride* (PATCH), #ComputerSystem.Reset, applied at once;
- the machine: a boot thread per power-on following the boot order (override,
  else disk if installed, else network). A network boot is iPXE's: DHCP with
  iPXE's options, the boot file's script over HTTP run by a small iPXE
  interpreter (downloads, chain, goto, exit), then the "installer" (fetch ks=,
  wipe the disk, wait --install-secs, POST rig.done=, reboot). A disk boot is
  the OS: DHCP, the leased address on the interface, an SSH banner on a port.
Plus MACs outside the inventory doing a plain DHCP now and then, asking for
their address again, to catch one pool address leased to two MACs.

Not simulated: the PXE ROM and TFTP (machines start as iPXE), a real kernel
or installer (downloads are read and dropped), lease renewal, L2 (DHCP uses
one UDP socket on port 68: its IP source is an address of the interface, not
0.0.0.0), IPMI, TLS. Logs: --log DIR/{bmc,dhcp,machine}.jsonl (JSON lines,
flushed per line); DIR/ready once the BMCs and the DHCP client listen.
"""
import argparse, contextlib, http.client, http.server, json, os, queue, random, re  # noqa: E401
import signal, socket, struct, subprocess, sys, threading, time, urllib.parse  # noqa: E401

LOCK = threading.RLock()        # every machine's power, boot override, disk, ip
STOP = threading.Event()        # SIGTERM/SIGINT or --seconds
ARGS = LOG = DHCP = None
BMCS = {}                       # bmc_ip -> Machine

HTTP_TIMEOUT = 5.0              # one machine-side socket operation
MAX_STATEMENTS = 500            # per iPXE script run
MAX_CHAIN = 4                   # nested iPXE `chain`s
MAX_BOOTS = 10                  # boots (installer reboots) per power-on
OPT_ARGS = ("--name", "-n", "--timeout", "-t")  # iPXE image options that take a value
DISCOVER_WAITS = (1, 2, 4, 4)   # seconds after each DISCOVER
RESET_TYPES = ["On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "PowerCycle"]
BOOT_VALUES = {"BootSourceOverrideTarget": ("None", "Pxe", "Hdd"),
               "BootSourceOverrideEnabled": ("Disabled", "Once", "Continuous"),
               "BootSourceOverrideMode": ("Legacy", "UEFI")}
SYS = "/redfish/v1/Systems/1"
RESET = SYS + "/Actions/ComputerSystem.Reset"


class Stale(Exception):
    """The boot thread's power-on is over (power event or shutdown)."""


class Log:
    """The three JSON-lines files; `t` is time.time()."""
    def __init__(self, d):
        self.lock = threading.Lock()
        self.files = {n: open(os.path.join(d, n + ".jsonl"), "a", buffering=1)
                      for n in ("bmc", "dhcp", "machine")}

    def write(self, which, /, **rec):
        line = json.dumps({"t": time.time(), **rec}, separators=(",", ":"))
        with self.lock:
            if which in self.files:
                print(line, file=self.files[which], flush=True)

    def close(self):
        with self.lock:
            for f in self.files.values():
                f.close()
            self.files = {}


def http_request(method, url, src, alive, keep=False, ua="iPXE/1.21.1"):
    """One request from address `src`: (True, body) on 2xx (GET: 200) with the
    whole body read, else (False, why). `keep`: return up to 1 MiB of body."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        return False, f"unsupported URL {url!r}"
    if not alive():
        return False, "powered off"
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=HTTP_TIMEOUT,
                                      source_address=(src, 0) if src else None)
    try:
        conn.request(method, (u.path or "/") + ("?" + u.query if u.query else ""),
                     body=b"" if method == "POST" else None, headers={"User-Agent": ua})
        r, chunks, n = conn.getresponse(), [], 0
        for _ in range(200000):              # 64 KiB reads: at most ~12 GiB
            b = r.read(65536)
            if not b:
                break
            n += len(b)
            if keep and n <= (1 << 20):
                chunks.append(b)
            if not alive():
                return False, "powered off"
        if r.status == 200 or (method != "GET" and 200 <= r.status < 300):
            return True, b"".join(chunks)
        return False, f"HTTP {r.status}"
    except (OSError, http.client.HTTPException) as e:
        return False, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


# ---------------------------------------------------------------- DHCP client
MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, ACK, NAK = 1, 2, 3, 5, 6
PRL_IPXE = bytes([1, 3, 6, 12, 15, 17, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175, 203])
PRL_OS = bytes([1, 3, 6, 12, 15, 26, 28, 42, 51, 54, 58, 59, 119])


def opt(code, data):
    return bytes([code, len(data)]) + data


def dhcp_packet(hw, xid, mtype, kind, requested=None, server=None):
    """A BOOTREQUEST with the broadcast flag; kind "netboot" adds iPXE's options."""
    hdr = struct.pack("!BBBBIHH16s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(16),
                      hw + bytes(10), b"", b"")
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
    """A BOOTREPLY as a dict, or None."""
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
    sid = opts.get(54)
    return {"xid": struct.unpack("!I", data[4:8])[0], "chaddr": data[28:34],
            "type": opts.get(53, b"\0")[0], "ip": socket.inet_ntoa(data[16:20]),
            "server": socket.inet_ntoa(sid) if sid and len(sid) == 4 else None, "from": src[0],
            "file": (opts.get(67) or data[108:236]).split(b"\0", 1)[0].decode("latin-1").strip()}


class DhcpClient:
    """One UDP socket on 0.0.0.0:68 (bound to the interface) for the whole
    segment; replies go to the waiting transaction by xid."""

    def __init__(self, iface):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_BINDTODEVICE", 25), iface.encode())
        s.bind(("0.0.0.0", 68))
        s.settimeout(0.5)
        self.sock, self.lock, self.waiters, self.xid = s, threading.Lock(), {}, random.getrandbits(32)
        threading.Thread(target=self._recv, daemon=True, name="dhcp-recv").start()

    def _recv(self):
        while not STOP.is_set():
            try:
                data, src = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                STOP.wait(0.2)
                continue
            m = dhcp_parse(data, src)
            with self.lock:
                q = self.waiters.get(m["xid"]) if m else None
            if q is not None and not q.full():
                q.put(m)

    @contextlib.contextmanager
    def xact(self):
        """A fresh xid and the queue its replies arrive on."""
        q = queue.Queue(maxsize=64)
        with self.lock:               # sequential from a random start: unique
            self.xid = xid = (self.xid + 1) & 0xFFFFFFFF
            self.waiters[xid] = q
        try:
            yield xid, q
        finally:
            with self.lock:
                self.waiters.pop(xid, None)

    def send(self, pkt, alive):
        if alive():
            with contextlib.suppress(OSError):
                self.sock.sendto(pkt, ("255.255.255.255", 67))

    @staticmethod
    def wait(q, hw, types, secs, alive):
        end = time.monotonic() + secs
        while alive() and time.monotonic() < end:
            try:
                m = q.get(timeout=max(0.01, min(0.2, end - time.monotonic())))
            except queue.Empty:
                continue
            if m["chaddr"] == hw and m["type"] in types:
                return m
        return None

    def dora(self, hw, kind, alive):
        """DISCOVER, first OFFER, REQUEST, ACK; a NAK or no ACK starts over
        (3 rounds at most). (ack, "") or (None, why)."""
        why = "no offer"
        for _ in range(3):
            with self.xact() as (xid, q):
                offer = reply = None
                for wait in DISCOVER_WAITS:
                    self.send(dhcp_packet(hw, xid, DISCOVER, kind), alive)
                    offer = self.wait(q, hw, (OFFER,), wait, alive)
                    if offer or not alive():
                        break
                if not offer or not alive():
                    return None, why if alive() else "powered off"
                for _ in range(3):
                    self.send(dhcp_packet(hw, xid, REQUEST, kind, offer["ip"], offer["server"]), alive)
                    reply = self.wait(q, hw, (ACK, NAK), 2, alive)
                    if reply or not alive():
                        break
            if reply and reply["type"] == ACK:
                return reply, ""
            why = f"NAK from {reply['server']}" if reply else f"no ACK from {offer['server']}"
        return None, why

    def init_reboot(self, hw, ip, alive):
        """REQUEST of a known address without server id: the ACK or None (NAK, silence)."""
        with self.xact() as (xid, q):
            for _ in range(2):
                self.send(dhcp_packet(hw, xid, REQUEST, "unknown", ip), alive)
                r = self.wait(q, hw, (ACK, NAK), 2, alive)
                if r:
                    return r if r["type"] == ACK else None
        return None


def log_ack(mac, name, ack, kind):
    LOG.write("dhcp", mac=mac, name=name, ip=ack["ip"], server=ack["server"],
              **{"from": ack["from"]}, kind=kind)


# ---------------------------------------------------------------- iPXE
class Ipxe:
    """Enough of iPXE's script engine for rackboot's scripts: `&&`/`||`, labels
    and goto, echo, sleep, kernel/initrd/imgfetch/chain, boot, sanboot, exit.
    As in iPXE, a failing command ends the script, and `exit [N]` ends the
    innermost script with status N (what its `chain` returns)."""

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

    def run(self, text, url, depth=0):
        """("end", ok), ("boot", kernel args) or ("sanboot",); Stale."""
        lines = [l.strip() for l in text.splitlines()]
        labels = {l[1:].split()[0]: i for i, l in enumerate(lines) if l.startswith(":") and l[1:].strip()}
        pc = 0
        for _ in range(MAX_STATEMENTS):
            if pc >= len(lines):
                return ("end", True)
            line, pc = lines[pc], pc + 1
            if not line or line[0] in "#:":
                continue
            ok, process, cmd = True, True, []
            for tok in line.split() + [None]:
                if tok not in ("&&", "||", None):
                    cmd.append(tok)
                    continue
                if process:
                    r = self.command(cmd, url, depth)
                    if isinstance(r, tuple) and r[0] == "goto" and r[1] in labels:
                        pc, ok = labels[r[1]], True
                        break
                    if isinstance(r, tuple) and r[0] == "exit":
                        return ("end", r[1])
                    if isinstance(r, tuple) and r[0] != "goto":
                        return r
                    ok = r is True
                process, cmd = (ok if tok == "&&" else not ok), []
            if not ok:
                return ("end", False)
        return ("end", False)

    def command(self, toks, url, depth):
        """True/False (the command's status) or a control tuple."""
        self.m.check(self.gen)
        if not toks:
            return True
        c, a = toks[0], [self.expand(t) for t in toks[1:]]
        if c == "sleep":              # whole seconds, as iPXE; scaled by --sleep-scale
            return bool(a and a[0].isdigit()) and (self.m.nap(int(a[0]) * ARGS.sleep_scale, self.gen) or True)
        if c in ("goto", "exit", "boot", "sanboot"):
            return {"goto": ("goto", a[0] if a else ""), "exit": ("exit", not a or a[0] == "0"),
                    "boot": ("boot", self.kernel) if self.kernel is not None else False,
                    "sanboot": ("sanboot",)}[c]
        if c not in ("kernel", "initrd", "imgfetch", "module", "chain"):
            return True                       # echo, set, dhcp, imgfree, ...: nothing to do
        pos = [i for i, t in enumerate(a) if t[:1] != "-" and (i == 0 or a[i - 1] not in OPT_ARGS)]
        if not pos:
            return False
        u = urllib.parse.urljoin(url, a[pos[0]])
        ok, body = self.m.fetch(self.gen, 1, 0, "GET", u, self.ip, keep=(c == "chain"))
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
            self.kernel = a[pos[0] + 1:]
            self.m.event("kernel", u)
        elif c in ("initrd", "module"):
            self.m.event("initrd", u)
        return True


# ---------------------------------------------------------------- machines
class Machine:
    """One machine: power, boot override and disk state (under LOCK), its boots."""
    def __init__(self, name, mac, bmc_ip, ip=None):
        self.name, self.mac, self.bmc_ip = name, mac.lower(), bmc_ip
        self.hw = bytes.fromhex(self.mac.replace(":", ""))
        self.power, self.gen, self.installed = "On", 1, True
        self.boot = {"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled",
                     "BootSourceOverrideMode": "Legacy"}
        self.ip = ip                  # last leased address
        self.addr = None              # the address it holds on the interface now
        self.listener = None          # the service port's socket
        self.net = threading.Lock()   # guards addr and listener; taken before LOCK

    def event(self, ev, detail=""):
        LOG.write("machine", mac=self.mac, name=self.name, event=ev, detail=detail)

    def alive(self, gen):
        with LOCK:
            return self.gen == gen and not STOP.is_set()

    def check(self, gen):
        if not self.alive(gen):
            raise Stale()

    def disk(self):
        with LOCK:
            return self.installed

    def nap(self, secs, gen):
        """Sleep in slices; Stale as soon as this boot is."""
        end = time.monotonic() + max(0.0, secs)
        while time.monotonic() < end:
            self.check(gen)
            STOP.wait(min(0.1, max(0.0, end - time.monotonic())))
        self.check(gen)

    def set_power(self, on, why, restart=False):
        """A power event from the BMC, applied at once (a no-op if already in
        that state, unless `restart`): the running boot is stale, the service
        port and the address go; On starts a boot thread."""
        with self.net:
            with LOCK:
                if self.power == ("On" if on else "Off") and not restart:
                    return
                self.gen += 1
                gen, self.power = self.gen, "On" if on else "Off"
            self.down()
        self.event("power-on" if on else "power-off", why)
        if on:
            threading.Thread(target=self.run, args=(gen,), daemon=True, name=f"boot-{self.name}").start()

    def down(self):
        """Close the service port and drop the address (self.net held)."""
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        self.hold(None)

    def hold(self, ip, gen=None):
        """Hold `ip` (None: no address) on the interface (self.net held)."""
        if gen is not None:
            self.check(gen)
        if self.addr != ip:           # `ip addr add|del A/32 dev IFACE`, "exists" ignored
            for op, a in (("del", self.addr), ("add", ip)):
                if a is not None and a not in BMCS:
                    subprocess.run(["ip", "addr", op, f"{a}/32", "dev", ARGS.iface],
                                   capture_output=True, timeout=10, check=False)
            self.addr = ip

    def fetch(self, gen, tries, pause, method, url, ip, **kw):
        """`tries` requests `pause` s apart: (ok, body or why)."""
        for i in range(tries):
            ok, r = http_request(method, url, ip, lambda: self.alive(gen), **kw)
            self.check(gen)
            if ok or i == tries - 1:
                return ok, r
            self.nap(pause, gen)

    # -- a power-on: one thread, ends when the generation moves on --
    def run(self, gen, post=None):
        with contextlib.suppress(Stale):
            for _ in range(MAX_BOOTS):
                if not self.boot_once(gen, ARGS.post_secs if post is None else post):
                    return
                post = None

    def boot_once(self, gen, post):
        """Firmware: POST, the boot devices in order. True: reboot."""
        self.nap(post, gen)
        with LOCK:
            tgt, en = self.boot["BootSourceOverrideTarget"], self.boot["BootSourceOverrideEnabled"]
            if en == "Once":
                self.boot.update(BootSourceOverrideTarget="None", BootSourceOverrideEnabled="Disabled")
        over = tgt if en in ("Once", "Continuous") else "None"
        why = f"override {tgt}/{en}" if over in ("Pxe", "Hdd") else "boot order"
        for dev in ("net", "disk") if over == "Pxe" else ("disk", "net"):
            if dev == "disk":
                if self.disk():
                    return self.disk_boot(gen, why)
                continue
            outcome, detail = self.netboot(gen, why)
            if outcome in ("reboot", "stop"):
                return outcome == "reboot"
            if outcome == "sanboot" and self.disk():
                return self.disk_boot(gen, "sanboot")
            nxt = "next device: disk" if over == "Pxe" and self.disk() else "stranded"
            self.check(gen)
            self.event("exit", f"{detail}; {nxt}")
            why = "after iPXE exit"
        return False

    def netboot(self, gen, why):
        """One network boot: ("reboot"|"stop"|"exit"|"sanboot", detail); Stale."""
        self.event("netboot", why)
        ack, fail = DHCP.dora(self.hw, "netboot", lambda: self.alive(gen))
        self.check(gen)
        if not ack:
            self.event("no-dhcp", f"netboot: {fail}")
            return "stop", fail
        log_ack(self.mac, self.name, ack, "netboot")
        with LOCK:
            self.ip = ack["ip"]
        with self.net:
            self.hold(ack["ip"], gen)
        ok, body = self.fetch(gen, 3, 1.0, "GET", ack["file"], ack["ip"], keep=True)
        if not ok:
            self.event("script-failed", f"{ack['file']}: {body}")
            return "stop", "no script"
        self.event("script", ack["file"])
        r = Ipxe(self, gen, ack["ip"]).run(body.decode("utf-8", "replace"), ack["file"])
        if r[0] == "boot":
            return self.install(gen, ack["ip"], r[1])
        if r[0] == "sanboot":
            return "sanboot", "sanboot"
        return "exit", "iPXE exit" + ("" if r[1] else " (error)")

    def install(self, gen, ip, args):
        """What the kernel would run: fetch the config, wipe, call back, reboot."""
        kv = dict(a.split("=", 1) for a in args if "=" in a)
        ks, done = kv.get("ks") or kv.get("inst.ks") or kv.get("url"), kv.get("rig.done")
        ok, why = self.fetch(gen, 5, 2.0, "GET", ks, ip, ua="drill-installer") if ks else (False, "no ks=")
        if not ok:
            self.event("download-failed", f"config {ks or '-'}: {why}")
            return "stop", "no config"
        self.event("config", ks)
        with LOCK:
            self.installed = False
        self.nap(ARGS.install_secs, gen)
        ok, why = (self.fetch(gen, 5, 2.0, "POST", done, ip, ua="drill-installer") if done
                   else (False, "no rig.done="))
        if not ok:
            self.event("done-failed", f"{done or '-'}: {why}")
            return "stop", "callback failed"
        with LOCK:
            self.installed = True
        self.event("done", done)
        return "reboot", "installed"

    def disk_boot(self, gen, why):
        """The installed OS: DHCP (else the last address), then the service port."""
        self.event("disk-boot", why)
        for _ in range(6):            # an OS without any address keeps asking (about a minute)
            ack, fail = DHCP.dora(self.hw, "os", lambda: self.alive(gen))
            self.check(gen)
            if ack or self.ip:
                break
        with LOCK:
            self.ip = ack["ip"] if ack else self.ip
            ip = self.ip
        if ack:
            log_ack(self.mac, self.name, ack, "os")
        else:
            self.event("no-dhcp", f"os, using last ip ({fail})" if ip else f"os, no address ({fail})")
            if not ip:
                return
        with self.net:
            self.hold(ip, gen)
            try:
                s = socket.create_server((ip, ARGS.svc_port), backlog=64)
            except OSError as e:
                print(f"segment: {self.name}: cannot listen on {ip}:{ARGS.svc_port}: {e}", file=sys.stderr)
                return
            s.settimeout(0.5)
            self.listener = s
        threading.Thread(target=self.serve, args=(s, gen), daemon=True, name=f"svc-{self.name}").start()
        self.event("up", f"{ip}:{ARGS.svc_port}")

    def redfish(self):
        with LOCK:
            power, boot = self.power, dict(self.boot)
        boot["BootSourceOverrideTarget@Redfish.AllowableValues"] = BOOT_VALUES["BootSourceOverrideTarget"]
        return {"@odata.id": SYS, "@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem", "Id": "1",
                "Name": self.name, "PowerState": power, "Boot": boot, "Status": {"State": "Enabled"},
                "Actions": {"#ComputerSystem.Reset": {"target": RESET,
                                                      "ResetType@Redfish.AllowableValues": RESET_TYPES}}}

    def serve(self, s, gen):
        while self.alive(gen):
            try:
                c, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError), c:
                c.settimeout(2)
                c.sendall(b"SSH-2.0-drill\r\n")


def unknown_loop(mac, every):
    """A MAC outside the inventory: a plain DHCP every `every` s (±20 %),
    asking for its last address first (INIT-REBOOT) once it has one."""
    hw, ip, alive = bytes.fromhex(mac.replace(":", "")), None, lambda: not STOP.is_set()
    nxt = time.monotonic() + random.uniform(0, every)
    while not STOP.wait(max(0.0, nxt - time.monotonic())):
        ack = DHCP.init_reboot(hw, ip, alive) if ip else None
        if not ack:
            ack, _ = DHCP.dora(hw, "unknown", alive)
        if ack and alive():
            ip = ack["ip"]
            log_ack(mac, None, ack, "unknown")
        nxt = time.monotonic() + every * random.uniform(0.8, 1.2)


# ---------------------------------------------------------------- Redfish BMCs
class Bmc(http.server.BaseHTTPRequestHandler):
    """All BMCs on one port: the machine is the connection's local address."""
    protocol_version = "HTTP/1.1"
    server_version = "drill-bmc/1"
    timeout = 30                      # idle keep-alive (ureq drops its idle ones after 15 s)

    def log_message(self, *a):
        pass

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

    def error(self, code, msg, extra=()):
        self.reply(code, {"error": {"code": "Base.1.8.GeneralError", "message": msg}}, extra)

    def do_GET(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw, self.close_connection = self.rfile.read(min(max(n, 0), 1 << 20)), n > (1 << 20)
        m = BMCS.get(self.connection.getsockname()[0])
        path, method = urllib.parse.urlsplit(self.path).path.rstrip("/"), self.command
        if m is None:
            return self.error(404, "no BMC at this address")
        if method == "GET" and path == "/redfish/v1":
            return self.reply(200, {"@odata.id": "/redfish/v1", "Id": "RootService", "RedfishVersion": "1.6.0",
                                    "Systems": {"@odata.id": "/redfish/v1/Systems"}})
        if not self.headers.get("Authorization", "").startswith("Basic "):
            return self.error(401, "authentication required", [("WWW-Authenticate", 'Basic realm="bmc"')])
        if method == "GET" and path == "/redfish/v1/Systems":
            return self.reply(200, {"@odata.id": "/redfish/v1/Systems", "Members@odata.count": 1,
                                    "Members": [{"@odata.id": SYS}]})
        if method == "GET" and path == SYS:
            return self.reply(200, m.redfish())
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.error(400, "malformed JSON body")
        if method == "PATCH" and path == SYS:
            return self.patch(m, body)
        if method == "POST" and path == RESET:
            return self.reset(m, body)
        known = path in (SYS, RESET, "/redfish/v1/Systems")
        return self.error(405 if known else 404, f"{method} {path} is not supported")

    do_POST = do_PATCH = do_GET

    def audit(self, m, op, status):
        LOG.write("bmc", bmc=m.bmc_ip, mac=m.mac, name=m.name, src=self.client_address[0],
                  ua=self.headers.get("User-Agent", ""), method=self.command, path=self.path,
                  op=op, status=status)

    def patch(self, m, body):
        boot = body.get("Boot") if isinstance(body.get("Boot"), dict) else {}
        new = {k: v for k, v in boot.items() if k in BOOT_VALUES}
        bad = [f"{k}={v}" for k, v in new.items() if v not in BOOT_VALUES[k]]
        op = "boot:{}/{}".format(new.get("BootSourceOverrideTarget", "-"),
                                 new.get("BootSourceOverrideEnabled", "-"))
        if bad or not new:
            self.audit(m, op, 400)
            return self.error(400, "unsupported: " + (", ".join(bad) or "no Boot override property"))
        with LOCK:
            m.boot.update(new)
        self.audit(m, op, 204)
        self.reply(204)

    def reset(self, m, body):
        rt = body.get("ResetType")
        if rt not in RESET_TYPES:
            self.audit(m, str(rt), 400)
            return self.error(400, f"ResetType {rt!r} is not one of {RESET_TYPES}")
        self.audit(m, rt, 204)
        m.set_power(rt not in ("ForceOff", "GracefulShutdown"), f"{rt} from {self.client_address[0]}",
                    restart=rt in ("ForceRestart", "GracefulRestart", "PowerCycle"))
        self.reply(204)


# ---------------------------------------------------------------- main
def main():
    global ARGS, LOG, DHCP
    p = argparse.ArgumentParser(description="Simulated machines and Redfish BMCs for the rackboot HA drill.")
    p.add_argument("--iface", required=True)
    p.add_argument("--machines", required=True, help="machines.json")
    p.add_argument("--log", required=True, help="log directory")
    p.add_argument("--svc-port", type=int, default=22)
    p.add_argument("--bmc-port", type=int, default=8000)
    p.add_argument("--install-secs", type=float, default=1.0)
    p.add_argument("--sleep-scale", type=float, default=1.0, help="factor on iPXE `sleep N`")
    p.add_argument("--post-secs", type=float, default=1.0, help="power-on/reboot to first boot device")
    p.add_argument("--seconds", type=float, default=3600.0)
    ARGS = p.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: STOP.set())
    with open(ARGS.machines) as f:
        cfg = json.load(f)
    os.makedirs(ARGS.log, exist_ok=True)
    LOG = Log(ARGS.log)
    machines = [Machine(e["name"], e["mac"], e["bmc_ip"], e.get("ip")) for e in cfg.get("machines", [])]
    BMCS.update((m.bmc_ip, m) for m in machines)
    unknown = cfg.get("unknown", [])  # [{"mac", "every"}]
    DHCP = DhcpClient(ARGS.iface)
    httpd = http.server.ThreadingHTTPServer(("0.0.0.0", ARGS.bmc_port), Bmc, bind_and_activate=False)
    httpd.request_queue_size = 256  # listen backlog: several daemons drive many BMCs at once
    httpd.server_bind()
    httpd.server_activate()
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
    print(f"segment: {len(machines)} machines, {len(unknown)} unknown, bmc port {ARGS.bmc_port}", flush=True)
    for m in machines:              # powered on and installed (generation 1): they boot their disk
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
    for m in machines:              # leave the interface as it was
        with m.net:
            m.down()
    LOG.close()
    print("segment: stopped", flush=True)


if __name__ == "__main__":
    main()
