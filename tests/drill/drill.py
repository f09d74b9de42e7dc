#!/usr/bin/env python3
"""tests/drill/drill.py - the HA drill of issue 16, run by tests/drill/run.sh inside rbdr-ctl.

Three `rackboot serve` processes share one PostgreSQL: d1 and d2 on segment A (boot domain
seg-a, each with its half of the DHCP pool), d3 alone on segment B (seg-b). The segments'
machines and Redfish BMCs are simulated by tests/drill/segment.py. Runs are created in waves
through the API of a random live daemon while a daemon is killed with SIGKILL every
KILL_MIN..KILL_MAX s and restarted 0..RESTART_MAX s later, and once a segment-A daemon is
SIGSTOPped past the lease TTL. Afterwards every daemon runs, the runs drain, and the drill
counts, from the database and from the simulators' logs:

  lost        runs that never finished                                     must be 0
  two owners  a run's step written under a lease older than one already   must be 0
              used for it (run_events.lease, migration 0012)
  fenced BMC  BMC commands (the fake BMC logs each sender's address) sent  must be 0
              by a daemon id after it was fenced (daemons.fenced_at)
  dup IPs     one address held by two MACs at once (a MAC holds an address must be 0
              from its ACK until it is ACKed another; reservations and pool)
  takeover    kill (or stop) of a run's owner -> the run claimed by a peer p99 <= --takeover-max

Every loop is bounded by a deadline. Exit 0 when every bound holds, 1 otherwise.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

REPO = os.environ["REPO"]
BIN = os.environ["RACKBOOT_BIN"]
W = os.environ["DRILL_WORK"]
PG_BIN = "/usr/lib/postgresql/15/bin"

DAEMONS = {
    "d1": {"ns": "rbdr-d1", "seg": "a", "ip": "10.61.0.11", "mgmt": "10.60.0.11", "slice": "1/2"},
    "d2": {"ns": "rbdr-d2", "seg": "a", "ip": "10.61.0.12", "mgmt": "10.60.0.12", "slice": "2/2"},
    "d3": {"ns": "rbdr-d3", "seg": "b", "ip": "10.62.0.13", "mgmt": "10.60.0.13", "slice": None},
}
SEGS = {
    "a": {"ns": "rbdr-ma", "net": "10.61", "domain": "seg-a", "mac": 0},
    "b": {"ns": "rbdr-mb", "net": "10.62", "domain": "seg-b", "mac": 1},
}
SRC_NODE = {d["ip"]: n for n, d in DAEMONS.items()}


def log(msg):
    print(f"drill: {time.strftime('%H:%M:%S')} {msg}", flush=True)


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


class Pg:
    """The drill's PostgreSQL (scripts/pg-tmp.sh in rbdr-db, as nobody) and psql queries."""

    def __init__(self):
        # pg-tmp.sh (as nobody) removes its base dir at the end: its parent is nobody's too.
        root = os.path.join(W, "pg")
        base = os.path.join(root, "base")
        os.makedirs(base)
        for d in (root, base):
            shutil.chown(d, "nobody", "nogroup")
        os.chmod(W, 0o755)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", "rbdr-db", "setpriv", "--reuid=nobody", "--regid=nogroup",
             "--clear-groups", "env", "PG_LISTEN=10.60.0.2", "sh",
             os.path.join(REPO, "scripts/pg-tmp.sh"), PG_BIN, base, "5432"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("ready "):
            raise SystemExit(f"drill: PostgreSQL did not start: {line}")
        self.url = line.split()[1]

    def rows(self, sql):
        r = sh("psql", "-X", "-At", "-F", "\t", self.url, "-c", sql, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return [ln.split("\t") for ln in r.stdout.splitlines() if ln]

    def stop(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=40)
        except Exception:
            self.proc.kill()


def write_configs(a, pg_url):
    boot = os.path.join(W, "boot")
    os.makedirs(boot)
    for f, n in (("vmlinuz", 64 * 1024), ("initrd.img", 128 * 1024)):
        with open(os.path.join(boot, f), "wb") as fh:
            fh.write(os.urandom(n))
    pw = os.path.join(W, "bmc-password")
    with open(pw, "w") as fh:
        fh.write("drillpass\n")
    systems, sims = [], {}
    for seg, s in SEGS.items():
        n = a.machines_a if seg == "a" else a.machines_b
        ms = []
        for i in range(1, n + 1):
            name = f"{seg}{i:03d}"
            mac = f"52:54:00:dd:{s['mac']:02x}:{i:02x}"
            bmc = f"{s['net']}.3.{i}"
            ms.append({"name": name, "mac": mac, "bmc_ip": bmc})
            systems.append(
                f'[systems.{name}]\nmacs = ["{mac}"]\nip = "{s["net"]}.2.{i}"\nprofile = "drill"\n'
                f'vars = {{ boot_domain = "{s["domain"]}" }}\n'
                f'[systems.{name}.bmc]\nkind = "redfish"\naddress = "http://{bmc}:8000"\n'
                f'username = "admin"\npassword_file = "{pw}"\n')
        unknown = [{"mac": f"52:54:00:ee:{s['mac']:02x}:{i:02x}", "every": a.unknown_every}
                   for i in range(1, (a.unknown if seg == "a" else 0) + 1)]
        sims[seg] = {"machines": ms, "unknown": unknown}
    for name, d in DAEMONS.items():
        c = os.path.join(W, name)
        shutil.copytree(os.path.join(REPO, "profiles"), os.path.join(c, "profiles"))
        with open(os.path.join(c, "profiles/drill.toml"), "w") as fh:
            fh.write(f"""description = "HA drill machine (tests/drill/segment.py)"
parent = "lab"
reboots = true
wait_ports = [22]
boot_retries = 3
[timeouts]
power = "20s"
dhcp = "{a.phase_timeout}s"
kernel = "{a.phase_timeout}s"
config = "{a.phase_timeout}s"
install = "{a.phase_timeout}s"
reboot = "{a.phase_timeout}s"
ssh = "{a.phase_timeout}s"
[[stages]]
name = "configure"
kind = "config"
command = "true"
[[stages]]
name = "test"
kind = "test"
command = "true"
""")
        with open(os.path.join(c, "systems.toml"), "w") as fh:
            fh.write("\n".join(systems))
        seg = SEGS[d["seg"]]
        pool = ""
        if d["slice"]:
            pool = (f'pool_start = "{seg["net"]}.5.1"\npool_end = "{seg["net"]}.5.200"\n'
                    f'pool_slice = "{d["slice"]}"\n')
        with open(os.path.join(c, "rackboot.toml"), "w") as fh:
            fh.write(f"""[server]
interface = "eth0"
address = "{d['ip']}"
http_port = 8080
boot_dir = "{boot}"
firmware_dir = "{REPO}/firmware"
templates_dir = "{REPO}/kickstarts"
data_dir = "data"
database_url = "{pg_url}"
node = "{name}"
boot_domains = ["{seg['domain']}"]
lease_ttl = "{a.ttl}s"

[dhcp]
mode = "{'pool' if d['slice'] else 'reservations'}"
{pool}lease_secs = 600
subnet_mask = "255.255.0.0"

[tftp]
max_transfers = 16

[api]
listen = "{d['mgmt']}:9080"

[limits]
max_parallel_runs = 100
max_parallel_bmc = 32
max_parallel_stages = 16
""")
    for seg, cfg in sims.items():
        with open(os.path.join(W, f"sim-{seg}.json"), "w") as fh:
            json.dump(cfg, fh)
    return sims


class Daemon:
    def __init__(self, name):
        self.name, self.d = name, DAEMONS[name]
        self.proc, self.stopped, self.lock = None, False, threading.Lock()
        self.token = None

    def start(self):
        with self.lock:
            out = open(os.path.join(W, f"{self.name}.log"), "a")
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.d["ns"], BIN, "serve", "-c",
                 os.path.join(W, self.name), "--log-format", "json"],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL)
            self.stopped = False

    def alive(self):
        with self.lock:
            return self.proc is not None and self.proc.poll() is None and not self.stopped

    def signal(self, sig):
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                return False
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait(timeout=10)
                self.proc = None
            self.stopped = sig == signal.SIGSTOP
            return True

    def api(self, method, path, body=None, timeout=10):
        if self.token is None:
            with open(os.path.join(W, self.name, "data/api-token")) as fh:
                self.token = fh.read().strip()
        req = urllib.request.Request(
            f"http://{self.d['mgmt']}:9080{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def wait_ready(self, secs=60):
        deadline = time.time() + secs
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.d['mgmt']}:9080/healthz", timeout=2):
                    if os.path.exists(os.path.join(W, self.name, "data/api-token")):
                        return
            except Exception:
                pass
            time.sleep(0.2)
        raise SystemExit(f"drill: {self.name} did not come up in {secs} s (see {W}/{self.name}.log)")


def read_jsonl(path):
    out = []
    if os.path.exists(path):
        with open(path) as fh:
            for ln in fh:
                try:
                    out.append(json.loads(ln))
                except ValueError:
                    pass
    return out


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))] if xs else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--machines-a", type=int, default=66)
    p.add_argument("--machines-b", type=int, default=34)
    p.add_argument("--unknown", type=int, default=10, help="unknown MACs on segment A (pool)")
    p.add_argument("--unknown-every", type=float, default=5.0)
    p.add_argument("--ttl", type=int, default=30, help="lease_ttl, s")
    p.add_argument("--phase-timeout", type=int, default=45)
    p.add_argument("--duration", type=int, default=600, help="seconds of waves and kills")
    p.add_argument("--wave-every", type=float, default=15.0)
    p.add_argument("--wave-size", type=int, default=40)
    p.add_argument("--kill-min", type=float, default=20.0)
    p.add_argument("--kill-max", type=float, default=60.0)
    p.add_argument("--restart-max", type=float, default=45.0)
    p.add_argument("--drain", type=int, default=300, help="seconds for the last runs to finish")
    p.add_argument("--takeover-max", type=float, default=35.0)
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--no-faults", action="store_true",
                   help="no kill, no stop: a throughput run (runs/s, per-run time) of 3 daemons")
    p.add_argument("--install-secs", type=float, default=5.0)
    a = p.parse_args()
    rnd = random.Random(a.seed)
    t_start = time.time()
    log(f"{a.machines_a}+{a.machines_b} machines, {a.unknown} unknown, ttl {a.ttl} s, "
        f"{a.duration} s of waves and kills every {a.kill_min:g}-{a.kill_max:g} s, seed {a.seed}")

    pg = Pg()
    sims = write_configs(a, pg.url)
    daemons = {n: Daemon(n) for n in DAEMONS}
    procs = []
    failures = []
    try:
        for seg, s in SEGS.items():
            for m in sims[seg]["machines"]:
                sh("ip", "-n", s["ns"], "addr", "add", f"{m['bmc_ip']}/32", "dev", "eth0")
            logdir = os.path.join(W, f"sim-{seg}")
            os.makedirs(logdir)
            out = open(os.path.join(W, f"sim-{seg}.log"), "w")
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", s["ns"], sys.executable,
                 os.path.join(REPO, "tests/drill/segment.py"), "--iface", "eth0",
                 "--machines", os.path.join(W, f"sim-{seg}.json"), "--log", logdir,
                 "--install-secs", str(a.install_secs),
                 "--seconds", str(a.duration + a.drain + 300)],
                stdout=out, stderr=out))
        # d1 first: it seeds the shared inventory from its files.
        daemons["d1"].start()
        daemons["d1"].wait_ready()
        for n in ("d2", "d3"):
            daemons[n].start()
        for n in ("d2", "d3"):
            daemons[n].wait_ready()
        for seg in SEGS:
            deadline = time.time() + 30
            while not os.path.exists(os.path.join(W, f"sim-{seg}", "ready")):
                if time.time() > deadline:
                    raise SystemExit(f"drill: segment {seg} simulator not ready (see {W}/sim-{seg}.log)")
                time.sleep(0.2)
        log(f"up: PostgreSQL {pg.url}, daemons d1 d2 (seg-a) d3 (seg-b), simulators ready "
            f"({time.time() - t_start:.1f} s)")

        names = [m["name"] for seg in SEGS for m in sims[seg]["machines"]]
        created = []
        kills = []        # {node, id, t, runs, kind}
        stop_flag = threading.Event()
        mu = threading.Lock()

        def live():
            return [d for d in daemons.values() if d.alive()]

        def current_id(node):
            r = pg.rows(f"SELECT id FROM daemons WHERE node = '{node}' AND NOT fenced "
                        "ORDER BY started_at DESC LIMIT 1")
            return r[0][0] if r else None

        def owned(did):
            return [r[0] for r in pg.rows(
                f"SELECT id FROM runs WHERE owner = '{did}' AND finished_at IS NULL")]

        down = set()      # names of killed daemons waiting for their restart

        def restart(d):
            with mu:
                if d.alive():
                    return
                d.start()
                down.discard(d.name)
            log(f"restarted {d.name}")

        def busiest(cands):
            """The candidate owning the most unfinished runs (ties: random)."""
            n = {d.name: len(owned(current_id(d.name) or "-")) for d in cands}
            top = max(n.values())
            return rnd.choice([d for d in cands if n[d.name] == top])

        def fault(victim, sig, kind):
            """Signal `victim`, recording its id and the runs it owned then."""
            did = current_id(victim.name)
            runs = owned(did) if did else []
            t = time.time()
            victim.signal(sig)
            with mu:
                kills.append({"node": victim.name, "id": did, "t": t, "runs": runs, "kind": kind})
            return did, runs

        def chaos():
            chaos_end = t_start + a.duration
            stop_at = t_start + a.duration * 0.45
            stopped_once = False
            timers = []
            while not stop_flag.is_set() and time.time() < chaos_end:
                if not stopped_once and time.time() >= stop_at:
                    if not (daemons["d1"].alive() and daemons["d2"].alive()):
                        stop_flag.wait(1)     # no kill meanwhile: the stop comes first
                        continue
                    victim = busiest([daemons["d1"], daemons["d2"]])
                    did, runs = fault(victim, signal.SIGSTOP, "stop")
                    log(f"SIGSTOP {victim.name} ({did}, {len(runs)} runs) for {a.ttl + 10} s")
                    stopped_once = True
                    stop_flag.wait(a.ttl + 10)
                    victim.signal(signal.SIGCONT)
                    log(f"SIGCONT {victim.name}")
                    continue
                wait = rnd.uniform(a.kill_min, a.kill_max)
                if stop_flag.wait(min(wait, max(0.0, chaos_end - time.time()))):
                    break
                if time.time() >= chaos_end:
                    break
                with mu:
                    cands = [d for d in live() if d.name not in down]
                if not cands:
                    continue
                # Half the faults hit the daemon with the most runs in flight.
                victim = busiest(cands) if rnd.random() < 0.5 else rnd.choice(cands)
                did, runs = fault(victim, signal.SIGKILL, "kill")
                back = rnd.uniform(0, a.restart_max)
                with mu:
                    down.add(victim.name)
                tm = threading.Timer(back, restart, args=(victim,))
                tm.daemon = True
                tm.start()
                timers.append(tm)
                log(f"SIGKILL {victim.name} ({did}, owned {len(runs)} unfinished runs); "
                    f"restart in {back:.1f} s")
            for tm in timers:
                tm.join(timeout=a.restart_max + 5)

        th = [threading.Thread(target=chaos, daemon=True)]
        if not a.no_faults:
            th[0].start()

        # Waves: runs for machines without an unfinished run, through a random live daemon.
        waves = 0
        # At least one wave (a throughput run is one wave), bounded by a minute past the end.
        while (waves == 0 and time.time() < t_start + a.duration + 60) \
                or time.time() < t_start + a.duration:
            busy = {r[0] for r in pg.rows("SELECT system FROM runs WHERE finished_at IS NULL")}
            free = [n for n in names if n not in busy]
            pick = rnd.sample(free, min(a.wave_size, len(free)))
            ds = live()
            if pick and ds:
                d = rnd.choice(ds)
                st, body = d.api("POST", "/api/v1/runs", {"systems": pick})
                if st == 201:
                    created.extend(r["id"] for r in body["runs"])
                    waves += 1
                    log(f"wave {waves}: {len(pick)} runs through {d.name} ({len(created)} so far)")
                else:
                    log(f"wave refused by {d.name}: {st} {str(body)[:200]}")
            time.sleep(a.wave_every)

        if not a.no_faults:
            th[0].join(timeout=a.ttl + a.restart_max + 60)
        for d in daemons.values():
            if d.stopped:
                d.signal(signal.SIGCONT)
            if not d.alive():
                d.start()
        log(f"chaos over after {time.time() - t_start:.0f} s: {len(kills)} faults; draining")
        deadline = time.time() + a.drain
        while time.time() < deadline:
            n = int(pg.rows("SELECT COUNT(*) FROM runs WHERE finished_at IS NULL")[0][0])
            if n == 0:
                break
            time.sleep(2)
        time.sleep(1)
        stop_flag.set()

        # ---- the counts ----
        states = pg.rows("SELECT state, COUNT(*) FROM runs GROUP BY state ORDER BY state")
        unfinished = pg.rows("SELECT id, system, state, COALESCE(owner,'-') FROM runs "
                             "WHERE finished_at IS NULL ORDER BY id")
        missing = set(created) - {r[0] for r in pg.rows("SELECT id FROM runs")}
        lost = len(unfinished) + len(missing)
        reasons = pg.rows("SELECT COALESCE(reason,''), COUNT(*) FROM runs WHERE state <> "
                          "'succeeded' AND finished_at IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 8")
        # Two owners: along a run's events, a lease token older than one already seen.
        ev = pg.rows("SELECT run_id, lease, writer FROM run_events WHERE lease IS NOT NULL "
                     "ORDER BY run_id, id")
        unfenced = int(pg.rows("SELECT COUNT(*) FROM run_events WHERE lease IS NULL "
                               "AND detail <> 'created'")[0][0])
        two, seen, writers = 0, {}, {}
        for run, lease, writer in ev:
            lease = int(lease)
            if lease < seen.get(run, 0):
                two += 1
                log(f"TWO OWNERS: run {run} written under lease {lease} by {writer} "
                    f"after lease {seen[run]}")
            if writers.setdefault((run, lease), writer) != writer:
                two += 1
                log(f"TWO OWNERS: run {run} lease {lease} written by {writers[(run, lease)]} "
                    f"and {writer}")
            seen[run] = max(seen.get(run, 0), lease)
        # BMC commands from a fenced daemon id.
        reg = pg.rows("SELECT id, node, started_at, COALESCE(fenced_at, 0) FROM daemons")
        bmc = []
        for seg in SEGS:
            bmc += read_jsonl(os.path.join(W, f"sim-{seg}", "bmc.jsonl"))
        fenced_cmds, unknown_src = 0, 0
        for c in bmc:
            node = SRC_NODE.get(c.get("src"))
            if node is None:
                unknown_src += 1
                continue
            t = c["t"] * 1000
            inst = [r for r in reg if r[1] == node and int(r[2]) <= t]
            if not inst:
                continue
            cur = max(inst, key=lambda r: int(r[2]))
            if int(cur[3]) and int(cur[3]) <= t:
                fenced_cmds += 1
                log(f"FENCED BMC COMMAND: {cur[0]} (fenced at {int(cur[3])}) sent {c.get('op')} "
                    f"to {c.get('bmc')} at {int(t)}")
        # Duplicate addresses: a MAC holds an address from an ACK of it until it is
        # ACKed another one (or the end); two MACs holding one address at once is a duplicate.
        leases = []
        for seg in SEGS:
            leases += read_jsonl(os.path.join(W, f"sim-{seg}", "dhcp.jsonl"))
        leases.sort(key=lambda lz: lz["t"])
        end = time.time()
        held, cur = {}, {}
        for lz in leases:
            c = cur.get(lz["mac"])
            if c and c[0] != lz["ip"]:
                held.setdefault(c[0], []).append((c[1], lz["t"], lz["mac"]))
                c = None
            if not c:
                cur[lz["mac"]] = (lz["ip"], lz["t"])
        for mac, (ip, t0) in cur.items():
            held.setdefault(ip, []).append((t0, end, mac))
        dups = {}
        for ip, spans in held.items():
            spans.sort()
            for i, x in enumerate(spans):
                for y in spans[i + 1:]:
                    if y[0] < x[1] and y[2] != x[2]:
                        dups.setdefault(ip, set()).update((x[2], y[2]))
        by_ip = held
        moved = sum(1 for spans in held.values() if len({m for _, _, m in spans}) > 1)
        pool_ips = {lz["ip"] for lz in leases if lz.get("kind") == "unknown"}
        # Takeovers: from the fault to the first step another daemon id wrote for each
        # run the victim owned (a claim writes one at once: "resumed in phase ...").
        peer, restart, unclaimed = [], [], 0
        for k in kills:
            if not k["runs"]:
                continue
            ids = ",".join(f"'{r}'" for r in k["runs"])
            t_ms = int(k["t"] * 1000)
            first = {r[0]: (int(r[1]) / 1000 - k["t"], r[2]) for r in pg.rows(
                f"SELECT DISTINCT ON (run_id) run_id, at, writer FROM run_events "
                f"WHERE run_id IN ({ids}) AND at > {t_ms} AND writer IS NOT NULL "
                f"AND writer <> '{k['id']}' ORDER BY run_id, at")}
            ended = {r[0] for r in pg.rows(
                f"SELECT id FROM runs WHERE id IN ({ids}) AND finished_at <= {t_ms + 1000}")}
            for r in k["runs"]:
                if r in first:
                    secs, w = first[r]
                    (restart if w.startswith(k["node"] + "#") else peer).append(secs)
                elif r not in ended:      # not finished by the victim just before the fault
                    unclaimed += 1

        log("==== results ====")
        log(f"runs created {len(created)}; by state: " + ", ".join(f"{s} {n}" for s, n in states))
        for rs, n in reasons:
            log(f"  not succeeded: {n} x {rs[:160]}")
        log(f"faults: {sum(1 for k in kills if k['kind'] == 'kill')} SIGKILL, "
            f"{sum(1 for k in kills if k['kind'] == 'stop')} SIGSTOP; runs owned at the fault "
            f"{sum(len(k['runs']) for k in kills)}")
        log(f"runs lost (unfinished after the drain, or never stored): {lost}")
        for u in unfinished[:10]:
            log(f"  unfinished: {u}")
        log(f"runs owned by two daemons at once: {two} (over {len(ev)} fenced writes; "
            f"{unfenced} writes without a lease)")
        span = pg.rows("SELECT MIN(created_at), MAX(finished_at), COUNT(*) FROM runs "
                       "WHERE state = 'succeeded'")[0]
        per = sorted(int(r[0]) / 1000 for r in pg.rows(
            "SELECT finished_at - created_at FROM runs WHERE state = 'succeeded'"))
        if per:
            wall = (int(span[1]) - int(span[0])) / 1000
            log(f"throughput: {span[2]} runs succeeded in {wall:.1f} s = {int(span[2]) / wall:.2f} "
                f"runs/s; per run created -> succeeded p50 {pct(per, .5):.1f} s  "
                f"p99 {pct(per, .99):.1f} s (simulated machines: install {a.install_secs:g} s)")
        log(f"BMC commands from a fenced daemon: {fenced_cmds} (of {len(bmc)} commands; "
            f"{unknown_src} from an unknown address)")
        log(f"duplicate IPs: {len(dups)} (over {len(by_ip)} addresses, {len(leases)} ACKs, "
            f"{len(pool_ips)} pool addresses to unknown MACs; {moved} addresses handed to "
            f"another MAC after their holder moved on)")
        if peer:
            log(f"takeover by a peer, fault -> claimed: n {len(peer)}  p50 {pct(peer, .5):.1f} s  "
                f"p99 {pct(peer, .99):.1f} s  max {max(peer):.1f} s")
        else:
            log("takeover by a peer: none (no run owned by a segment-A daemon at a fault)")
        if restart:
            log(f"taken back by the restarted daemon (no peer, or it came back first): n "
                f"{len(restart)}  p50 {pct(restart, .5):.1f} s  max {max(restart):.1f} s")
        log(f"runs owned at a fault never driven again by another daemon id: {unclaimed}")
        if lost:
            failures.append(f"{lost} runs lost")
        if two:
            failures.append(f"{two} writes by a second owner")
        if fenced_cmds:
            failures.append(f"{fenced_cmds} BMC commands from a fenced daemon")
        if dups:
            failures.append(f"duplicate IPs: {dups}")
        if peer and pct(peer, .99) > a.takeover_max:
            failures.append(f"takeover p99 {pct(peer, .99):.1f} s > {a.takeover_max} s")
        if not created:
            failures.append("no run was created")
        if not a.no_faults and not any(k["kind"] == "stop" for k in kills):
            failures.append("no daemon was stopped past the TTL")
        if not a.no_faults and not any(k["kind"] == "kill" for k in kills):
            failures.append("no daemon was killed")
        if unclaimed:
            failures.append(f"{unclaimed} runs owned at a fault were never claimed again")
    finally:
        for d in daemons.values():
            try:
                if d.stopped:
                    d.signal(signal.SIGCONT)
                if d.proc is not None and d.proc.poll() is None:
                    d.proc.terminate()
                    d.proc.wait(timeout=15)
            except Exception:
                if d.proc is not None:
                    d.proc.kill()
        for pr in procs:
            pr.terminate()
            try:
                pr.wait(timeout=10)
            except Exception:
                pr.kill()
        pg.stop()
    log(f"took {time.time() - t_start:.0f} s")
    if failures:
        log("FAIL: " + "; ".join(failures))
        sys.exit(1)
    log("PASS")


if __name__ == "__main__":
    main()
