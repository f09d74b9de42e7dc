#!/usr/bin/env python3
"""Write the committed seed corpus fuzz/corpus/<target>/ (run from anywhere).

The seeds are the packets and files the integration tests use (tests/it:
firmware-like DHCP discovers, TFTP requests with RFC 2347 options, RMCP+
replies, sushy-tools-like Redfish JSON, the boot routes, the sample config),
written out in each target's input format (see fuzz/src/targets.rs).
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")


def rec(kind, data):
    return bytes([kind]) + struct.pack("<H", len(data)) + data


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------------ dhcp
MAC = bytes.fromhex("525400770050")
COOKIE = bytes([99, 130, 83, 99])


def opt(code, data):
    return bytes([code, len(data)]) + data


def dhcp(msg_type, options, giaddr=b"\0" * 4, ciaddr=b"\0" * 4, flags=0x8000, file=b""):
    hdr = struct.pack("!BBBBIHH", 1, 1, 6, 1 if giaddr != b"\0" * 4 else 0, 0x1A2B3C4D, 0, flags)
    hdr += ciaddr + b"\0" * 4 + b"\0" * 4 + giaddr
    hdr += MAC + b"\0" * 10 + b"\0" * 64 + file.ljust(128, b"\0")
    body = opt(53, bytes([msg_type])) + b"".join(options) + b"\xff"
    return hdr + COOKIE + body


GUID = opt(97, b"\0" + bytes(range(16)))
PARAMS = opt(55, bytes([1, 3, 6, 12, 15, 43, 60, 66, 67, 97, 119, 175]))
UNDI = opt(94, bytes([1, 3, 16]))


def pxe(arch):
    return opt(60, b"PXEClient:Arch:%05d:UNDI:003016" % arch)


def write_dhcp():
    write("dhcp", "seabios-ipxe-discover", dhcp(1, [opt(93, b"\0\0"), UNDI, pxe(0), GUID, PARAMS,
                                                  opt(77, b"iPXE"), opt(175, bytes([0x13, 1, 1, 0x19, 1, 1]))]))
    write("dhcp", "ovmf-pxe-discover", dhcp(1, [opt(93, b"\0\x07"), UNDI, pxe(7), GUID, PARAMS]))
    write("dhcp", "uefi-http-discover", dhcp(1, [opt(93, b"\0\x10"), UNDI,
                                                opt(60, b"HTTPClient:Arch:00016:UNDI:003016"), GUID, PARAMS]))
    write("dhcp", "arm64-pxe-discover", dhcp(1, [opt(93, b"\0\x0b"), UNDI, pxe(11), GUID, PARAMS]))
    write("dhcp", "relayed-discover", dhcp(1, [opt(93, b"\0\x07"), pxe(7), opt(82, opt(1, b"eth0"))],
                                          giaddr=bytes([10, 77, 1, 1])))
    write("dhcp", "ipxe-request", dhcp(3, [opt(50, bytes([10, 77, 0, 50])), opt(54, bytes([10, 77, 0, 1])),
                                          opt(93, b"\0\x07"), pxe(7), opt(77, b"iPXE"), PARAMS]))
    write("dhcp", "pxe-4011-request", dhcp(3, [opt(93, b"\0\x07"), pxe(7), GUID,
                                              opt(43, opt(71, b"\x80\x00\0\0") + b"\xff")],
                                          ciaddr=bytes([10, 77, 0, 50])))
    write("dhcp", "inform", dhcp(8, [PARAMS], ciaddr=bytes([10, 77, 0, 50])))
    write("dhcp", "release", dhcp(7, [opt(54, bytes([10, 77, 0, 1]))], ciaddr=bytes([10, 77, 0, 50])))
    write("dhcp", "decline", dhcp(4, [opt(50, bytes([10, 77, 0, 50])), opt(54, bytes([10, 77, 0, 1]))]))
    # Option overload (52 = 3): more options in file and sname.
    write("dhcp", "overload", dhcp(1, [opt(52, b"\x01"), pxe(0)], file=opt(93, b"\0\0") + b"\xff"))


# ------------------------------------------------------------------ tftp
def rrq(name, mode=b"octet", opts=()):
    p = b"\0\x01" + name + b"\0" + mode + b"\0"
    for k, v in opts:
        p += k + b"\0" + v + b"\0"
    return p


def ack(n):
    return b"\0\x04" + struct.pack("!H", n)


def write_tftp():
    full = [(b"blksize", b"1468"), (b"tsize", b"0"), (b"windowsize", b"4"), (b"timeout", b"3")]
    write("tftp", "rrq-options-window", rec(3, rrq(b"undionly.kpxe", opts=full))
          + rec(0, ack(0)) + rec(0, ack(1)) + rec(0, ack(2)) + rec(1, b"") + rec(0, ack(2)))
    write("tftp", "rrq-plain", rec(2, rrq(b"/ipxe.efi")) + rec(0, ack(1)) + rec(0, ack(2))
          + rec(0, ack(3)))
    write("tftp", "rrq-tsize-probe-error8", rec(5, rrq(b"ipxe.efi", opts=[(b"tsize", b"0")]))
          + rec(0, b"\0\x05\0\x08tsize probe\0"))
    write("tftp", "rrq-netascii", rec(1, rrq(b"pxelinux.cfg/default", mode=b"netascii")))
    write("tftp", "rrq-unknown-option", rec(0, rrq(b"empty", opts=[(b"multicast", b""), (b"BLKSIZE", b"8")]))
          + rec(0, ack(0)) + rec(0, ack(1)))
    write("tftp", "rrq-timeouts", rec(1, rrq(b"a", opts=[(b"blksize", b"8")])) + rec(1, b"") * 3)
    write("tftp", "wrq", rec(1, b"\0\x02upload\0octet\0"))
    write("tftp", "oack", rec(1, b"\0\x06blksize\0" + b"512\0"))
    write("tftp", "data", rec(1, b"\0\x03\0\x01hello"))


# ------------------------------------------------------------------ ipmi
def rmcp(ptype, payload, sid=0, seq=0):
    return bytes([6, 0, 0xFF, 7, 6, ptype]) + struct.pack("<IIH", sid, seq, len(payload)) + payload


def open_session_response(status=0, bmc_sid=0x0A0B0C0D, auth=1, integ=1, conf=1):
    p = bytes([0, status, 4, 0]) + b"\0" * 4
    if status:
        return p
    p += struct.pack("<I", bmc_sid)
    for t, alg in ((0, auth), (1, integ), (2, conf)):
        p += bytes([t, 0, 0, 8, alg, 0, 0, 0])
    return p


def rakp2(status=0, code_len=20):
    p = bytes([0, status, 0, 0]) + b"\0" * 4
    if status:
        return p
    return p + bytes(range(16)) + bytes(range(16, 32)) + b"\xAA" * code_len


def lan_response(netfn, cmd, rq_seq, cc, data):
    m = bytes([0x81, (netfn | 1) << 2])
    m += bytes([(-sum(m)) & 0xFF])
    body = bytes([0x20, (rq_seq & 0x3F) << 2, cmd, cc]) + data
    return m + body + bytes([(-sum(body)) & 0xFF])


def write_ipmi():
    osr = open_session_response()
    write("ipmi", "decode-open-session-response", b"\0" + rmcp(0x11, osr))
    write("ipmi", "decode-open-session-refused", b"\0" + rmcp(0x11, open_session_response(status=0x11)))
    write("ipmi", "decode-rakp2", b"\0" + rakp2())
    write("ipmi", "decode-rakp4", b"\0" + bytes([0, 0, 0, 0]) + b"\0" * 4 + b"\xBB" * 12)
    write("ipmi", "decode-chassis-status", b"\0" + bytes([0x01, 0x10, 0x40, 0x00]))
    write("ipmi", "decode-boot-param5", b"\0" + bytes([0x01, 0x05, 0xA0, 0x04, 0, 0, 0]))
    write("ipmi", "decode-lan-response", b"\0" + lan_response(0, 1, 1, 0, b"\x01\x10\x40"))
    sess = rmcp(0xC0, b"\x11" * 32, sid=0x11223344, seq=1) + b"\xff\xff\x02\x07" + b"\xCC" * 12
    write("ipmi", "decode-session-packet", b"\0" + sess)
    # Handshakes: the Open Session Response with tag and SID fixed up by the
    # harness (kind 0x11<<2 | 3), then RAKP2 (0x13<<2 | 3); suite 3 and 17.
    for mode, name, code_len in ((1, "hs-suite3", 20), (0x81, "hs-suite17", 32)):
        integ = 1 if mode == 1 else 4
        auth = 1 if mode == 1 else 3
        write("ipmi", name, bytes([mode]) + rec(0x11 << 2 | 3, open_session_response(auth=auth, integ=integ))
              + rec(0x13 << 2 | 3, rakp2(code_len=code_len)))
    write("ipmi", "hs-refused", b"\x01" + rec(0x11 << 2 | 3, open_session_response(status=0x11)))
    write("ipmi", "hs-raw", b"\x01" + rec(0, rmcp(0x11, osr)) + rec(0xFE, b""))
    # Sessions: a request (kind 2) and the BMC's encrypted answer (kind 1|4:
    # checksums fixed), then a replay (kind 1|8), retransmit and abandon.
    for mode, name in ((2, "session-suite3"), (0x82, "session-suite17")):
        write("ipmi", name, bytes([mode]) + rec(2, b"\x00\x01") + rec(5, lan_response(0, 1, 1, 0, b"\x01\x10\x40"))
              + rec(9, lan_response(0, 1, 1, 0, b"\x01\x10\x40")) + rec(3, b"") + rec(7, b""))
    write("ipmi", "session-boot-options", b"\x02" + rec(2, b"\x00\x09\x05\x00\x00")
          + rec(5, lan_response(0, 9, 1, 0, bytes([1, 5, 0xA0, 4, 0, 0, 0]))))


# ------------------------------------------------------------------ redfish
def write_redfish():
    sysres = {
        "@odata.id": "/redfish/v1/Systems/437XR1138R2",
        "Id": "437XR1138R2",
        "PowerState": "On",
        "Boot": {
            "BootSourceOverrideEnabled": "Once",
            "BootSourceOverrideTarget": "Pxe",
            "BootSourceOverrideMode": "UEFI",
            "BootSourceOverrideTarget@Redfish.AllowableValues": ["Pxe", "Hdd", "Cd"],
        },
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": "/redfish/v1/Systems/437XR1138R2/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "GracefulShutdown",
                                                      "ForceRestart", "PowerCycle"],
            }
        },
    }
    write("redfish", "system", json.dumps(sysres, indent=1))
    write("redfish", "system-off-continuous", json.dumps(
        {"PowerState": "Off", "Boot": {"BootSourceOverrideEnabled": "Continuous",
                                       "BootSourceOverrideTarget": "Hdd"},
         "Actions": {"#ComputerSystem.Reset": {"target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"}}}))
    write("redfish", "collection", json.dumps(
        {"@odata.id": "/redfish/v1/Systems", "Members@odata.count": 2,
         "Members": [{"@odata.id": "/redfish/v1/Systems/node1"}, {"@odata.id": "/redfish/v1/Systems/node2/"}]}))
    write("redfish", "error", json.dumps(
        {"error": {"code": "Base.1.0.GeneralError", "message": "Power state PowerCycle is not supported",
                   "@Message.ExtendedInfo": [{"MessageId": "Base.1.8.ActionNotSupported",
                                              "Message": "The action is not supported."}]}}))
    write("redfish", "html", "<html>\n <body>502 Bad Gateway</body>\n</html>\n")
    write("redfish", "address", "https://[fd00::5]:8443/redfish/v1/")


# ------------------------------------------------------------------ boot_routes
def write_boot_routes():
    # byte 0: bits 0-1 method (GET, POST, HEAD), bits 2-3 peer
    # (10.77.0.52 = node52, 10.77.0.50, 127.0.0.1, 10.77.0.9).
    seeds = {
        "healthz": (0, b"/healthz"),
        "boot-ipxe": (0, b"/boot.ipxe"),
        "ipxe-mac": (0, b"/ipxe/52:54:00:77:00:52"),
        "ipxe-mac-dashes": (0, b"/ipxe/52-54-00-77-00-50"),
        "ks-own": (0, b"/ks/52:54:00:77:00:52"),
        "ks-other-peer": (4, b"/ks/52:54:00:77:00:52"),
        "nocloud": (0, b"/nocloud/52:54:00:77:00:71/user-data"),
        "boot-file-range": (0, b"/boot/vmlinuz\nbytes=0-99"),
        "boot-file-head": (2, b"/boot/initrd.img"),
        "boot-dotdot": (0, b"/boot/../rackboot.toml"),
        "firmware": (8, b"/firmware/ipxe.efi\nbytes=2-"),
        "done-token": (1, b"/done/52:54:00:77:00:52?token=secret-token"),
        "done-wrong": (0, b"/done/52:54:00:77:00:52?token=nope&x=%20"),
        "done-bad-mac": (1, b"/done/zz:54:00:77:00:52?token="),
    }
    for name, (sel, target) in seeds.items():
        write("boot_routes", name, bytes([sel]) + target)


# ------------------------------------------------------------------ config
def read(rel):
    with open(os.path.join(REPO, rel), "rb") as f:
        return f.read()


def write_config():
    daemon, systems, lab = read("rackboot.toml"), read("systems.toml"), read("profiles/lab.toml")
    write("config", "sample", daemon + b"\0" + systems + b"\0" + lab)
    write("config", "pool-mode", b'[server]\naddress = "10.0.0.1"\n[dhcp]\nmode = "pool"\n'
          b'pool_start = "10.0.0.100"\npool_end = "10.0.0.150"\nlease_secs = 60\n\0' + systems)
    write("config", "proxy-mode", b'[dhcp]\nmode = "proxy"\n[api]\nlisten = "[::1]:9080"\n'
          b'tls_cert = "a.pem"\n\0' + systems + b"\0" + read("profiles/lab-disk.toml"))
    write("config", "one-system", b"\0" + b'[systems.n1]\nhostname = "n1"\nmacs = ["52:54:00:00:00:01"]\n'
          b'ip = "10.77.0.9"\nprofile = "lab"\n[systems.n1.bmc]\nkind = "redfish"\naddress = "https://bmc"\n'
          b'username = "root"\npassword_file = "tests/lab/bmc-password"\n')
    write("config", "duration", b"30s")


def write_sol():
    # Inbound size 32 (ipmi_sim), then the records of fuzz/src/targets.rs::sol.
    def sol(seq, ack, acc, st, data=b""):
        return bytes([seq, ack, acc, st]) + data
    write("sol", "boot-lines", bytes([32])
          + rec(0, sol(1, 0, 0, 0, b"SeaBIOS (version 1.16)\r\n"))
          + rec(0, sol(1, 0, 0, 0, b"SeaBIOS (version 1.16)\r\n"))
          + rec(0, sol(2, 0, 0, 0x08, b"\x1b[2Jlogin: ")))
    write("sol", "typed-partial-nack", bytes([4])
          + rec(1, b"root\r")
          + rec(0, sol(0, 1, 0, 0x40))
          + rec(2, b"")
          + rec(0, sol(3, 1, 2, 0, b"ok"))
          + rec(0, sol(0, 2, 3, 0x10)))
    write("sol", "activate", bytes([32])
          + rec(3, bytes([0, 0, 0, 0, 32, 0, 0, 0x40, 0x6f, 0x02, 0xff, 0xff])))


def main():
    # Keep the crash inputs of fixed bugs (regression-*): the smoke replays them.
    for root, _, files in os.walk(CORPUS):
        for f in files:
            if not f.startswith("regression-"):
                os.remove(os.path.join(root, f))
    write_dhcp()
    write_tftp()
    write_ipmi()
    write_sol()
    write_redfish()
    write_boot_routes()
    write_config()
    for t in sorted(os.listdir(CORPUS)):
        print(t, len(os.listdir(os.path.join(CORPUS, t))))


if __name__ == "__main__":
    main()
