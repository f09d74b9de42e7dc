#!/usr/bin/env python3
"""Stand-in for rackboot's HTTP side in the lab (tests/lab, LAB_SERVER=standin; stdlib only).
Copied from the reference rig (/work/shared/rig/server/standin_http.py) and adapted:
--boot-dir serves $LAB_BOOT, /healthz, and a per-machine token on the ks/callback URLs.

Routes (mac_hyp = 52-54-00-77-00-50):
  GET  /healthz            "ok" (up.sh waits for it, like for rackboot)
  GET  /boot.ipxe          generic iPXE script: chains to /ipxe/${net0/mac:hexhyp}
  GET  /ipxe/<mac_hyp>     per-machine iPXE script   (templates/ipxe.tmpl)
  GET  /ks/<mac_hyp>       per-machine "kickstart"   (templates/ks.sh.tmpl)
  GET|POST /done/<mac_hyp>?token=<token>  callback; recorded in <state>/done-<mac_hyp>;
                           403 when the token is missing or wrong (exercises guest/init's
                           "rig.done URL may carry a query" contract)
  GET  /boot/<file>        static payload from --boot-dir (vmlinuz, initrd.img, disk.img)
Template variables: mac mac_hyp ip hostname http server ssh_pubkey token
(token = per machine and per stand-in start, sha256(secret + mac)[:16]).
Every request is logged with a millisecond timestamp (epoch) for phase timing.

--disk-mode (up.sh passes it when VM_DISK is set): /ks/<mac_hyp> gets
templates/ks-disk.sh.tmpl appended (write /boot/disk.img to the disk, callback
stage=installed, reboot), and once <state>/done-<mac_hyp> holds a stage=installed
callback, /ipxe/<mac_hyp> answers templates/ipxe-local.tmpl (iPXE `exit`: the
firmware boots the next device, the disk) instead of the installer. Delete the
done file to reinstall. Without the flag nothing changes.
"""
import argparse
import hashlib
import os
import string
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def load_inventory(path):
    inv = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            mac, ip, host = line.split()[:3]
            inv[mac.lower().replace(":", "-")] = {
                "mac": mac.lower(), "mac_hyp": mac.lower().replace(":", "-"),
                "ip": ip, "hostname": host}
    return inv


class Handler(BaseHTTPRequestHandler):
    server_version = "rackboot-lab-standin/0.1"
    cfg = None
    log_lock = threading.Lock()

    def log_message(self, fmt, *args):  # silence default stderr logging
        pass

    def _log(self, status, nbytes, t0, extra=""):
        now = time.time()
        line = "%.3f %s %s %s %s %d %d %.1fms %s\n" % (
            now, time.strftime("%H:%M:%S", time.localtime(now)), self.client_address[0],
            self.command, self.path, status, nbytes, (now - t0) * 1000, extra)
        with self.log_lock:
            with open(self.cfg.log, "a") as f:
                f.write(line)

    def _send(self, status, body, ctype="text/plain", t0=None, extra=""):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._log(status, len(body), t0 or time.time(), extra)

    def _render(self, tmpl, node):
        with open(os.path.join(self.cfg.templates, tmpl)) as f:
            t = string.Template(f.read())
        with open(self.cfg.pubkey) as f:
            pub = f.read().strip()
        return t.safe_substitute(node, http=self.cfg.base_url, server=self.cfg.server_ip,
                                 ssh_pubkey=pub, token=self._token(node["mac_hyp"]))

    def _token(self, mac_hyp):
        return hashlib.sha256((self.cfg.secret + mac_hyp).encode()).hexdigest()[:16]

    def _node(self, mac_hyp):
        return load_inventory(self.cfg.inventory).get(mac_hyp.lower())

    def _installed(self, mac_hyp):  # disk mode: the installer called back stage=installed
        try:
            with open(os.path.join(self.cfg.state, "done-" + mac_hyp)) as f:
                return "stage=installed" in f.read()
        except OSError:
            return False

    def _disk_mode(self, prefix, node, t0):
        if prefix == "/ks/":
            body = self._render("ks.sh.tmpl", node) + self._render("ks-disk.sh.tmpl", node)
            return self._send(200, body, t0=t0, extra="DISK-INSTALL")
        if self._installed(node["mac_hyp"]):
            return self._send(200, self._render("ipxe-local.tmpl", node), t0=t0, extra="LOCAL-BOOT")
        return self._send(200, self._render("ipxe.tmpl", node), t0=t0, extra="INSTALLER")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        t0 = time.time()
        p = self.path.split("?", 1)[0]
        try:
            if p == "/healthz":
                return self._send(200, "ok\n", t0=t0)
            if p == "/boot.ipxe":
                body = "#!ipxe\necho rig: iPXE ${version} on ${net0/mac}, chaining per-machine script\n" \
                       "chain %s/ipxe/${net0/mac:hexhyp}\n" % self.cfg.base_url
                return self._send(200, body, t0=t0)
            for prefix, tmpl in (("/ipxe/", "ipxe.tmpl"), ("/ks/", "ks.sh.tmpl")):
                if p.startswith(prefix):
                    node = self._node(p[len(prefix):])
                    if not node:
                        return self._send(404, "unknown machine\n", t0=t0)
                    if self.cfg.disk_mode:
                        return self._disk_mode(prefix, node, t0)
                    return self._send(200, self._render(tmpl, node), t0=t0)
            if p.startswith("/done/"):
                return self._done(p[len("/done/"):], b"", t0)
            if p.startswith("/boot/"):
                name = os.path.basename(p)
                fp = os.path.join(self.cfg.boot_dir, name)
                if not os.path.isfile(fp):
                    return self._send(404, "not found\n", t0=t0)
                size = os.path.getsize(fp)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if self.command != "HEAD":
                    with open(fp, "rb") as f:
                        while True:
                            chunk = f.read(1 << 20)
                            if not chunk:
                                break
                            self.wfile.write(chunk)
                return self._log(200, size, t0)
            return self._send(404, "not found\n", t0=t0)
        except (BrokenPipeError, ConnectionResetError) as e:
            self._log(499, 0, t0, "client went away: %s" % e)

    def do_POST(self):
        t0 = time.time()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        p = self.path.split("?", 1)[0]
        if p.startswith("/done/"):
            return self._done(p[len("/done/"):], body, t0)
        return self._send(404, "not found\n", t0=t0)

    def _done(self, mac_hyp, body, t0):
        q = self.path.split("?", 1)[1] if "?" in self.path else ""
        tok = dict(kv.split("=", 1) for kv in q.split("&") if "=" in kv).get("token")
        if tok != self._token(mac_hyp.lower()):
            return self._send(403, "bad or missing token\n", t0=t0,
                              extra="CALLBACK REJECTED token=%s" % tok)
        os.makedirs(self.cfg.state, exist_ok=True)
        rec = "%.3f %s %s\n" % (time.time(), self.client_address[0], body.decode(errors="replace"))
        with open(os.path.join(self.cfg.state, "done-" + mac_hyp), "a") as f:
            f.write(rec)
        return self._send(200, "ok\n", t0=t0, extra="CALLBACK " + body.decode(errors="replace"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="10.77.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--boot-dir", required=True, help="served as /boot/<file>")
    ap.add_argument("--templates", required=True)
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--pubkey", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--pidfile")
    ap.add_argument("--disk-mode", action="store_true",
                    help="install to disk, then answer /ipxe/<mac> with a local-boot script")
    cfg = ap.parse_args()
    if cfg.pidfile:
        with open(cfg.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    cfg.server_ip = cfg.bind
    cfg.secret = os.urandom(16).hex()
    cfg.base_url = "http://%s:%d" % (cfg.bind, cfg.port)
    Handler.cfg = cfg
    srv = ThreadingHTTPServer((cfg.bind, cfg.port), Handler)
    srv.daemon_threads = True
    print("standin_http listening on %s" % cfg.base_url, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
