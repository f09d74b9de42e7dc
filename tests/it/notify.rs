//! The real binary under a fake service manager: a unix datagram socket as
//! `NOTIFY_SOCKET` (systemd's notify protocol). `READY=1` with a `STATUS=`
//! once it serves, `WATCHDOG=1` every half `WATCHDOG_USEC`, `STOPPING=1` on
//! SIGTERM; without `WATCHDOG_USEC` no pings.

use crate::harness::{free_port, ConfigDir};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback config whose DHCP and TFTP listen on ephemeral ports.
pub(crate) fn config() -> ConfigDir {
    let c = ConfigDir::sample();
    c.use_loopback(free_port(), free_port());
    c.replace("rackboot.toml", "[dhcp]\n", "[dhcp]\nport = 0\n");
    c.replace("rackboot.toml", "[tftp]\n", "[tftp]\nport = 0\n");
    c
}

pub(crate) fn spawn(c: &ConfigDir, sock: &Path, watchdog_usec: Option<u64>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rackboot"));
    cmd.args(["serve", "--config"])
        .arg(c.path())
        .env("RACKBOOT_LOG", "info")
        .env("NOTIFY_SOCKET", sock)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(c.path().join("daemon.log")).unwrap());
    if let Some(u) = watchdog_usec {
        cmd.env("WATCHDOG_USEC", u.to_string());
    }
    cmd.spawn().unwrap()
}

/// The next datagram, or None after `within`.
fn recv(sock: &UnixDatagram, within: Duration) -> Option<String> {
    sock.set_read_timeout(Some(within.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("recv: {e}"),
    }
}

/// Messages until one has a line `want`, within `secs`; all of them.
pub(crate) fn until(sock: &UnixDatagram, want: &str, secs: u64, c: &ConfigDir) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {want:?} within {secs}s; got {got:?}; log:\n{}",
            c.read("daemon.log")
        );
        if let Some(m) = recv(sock, left) {
            let hit = m.lines().any(|l| l == want);
            got.push(m);
            if hit {
                return got;
            }
        }
    }
}

pub(crate) fn stop(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child by pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("daemon did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ready_watchdog_stopping() {
    let c = config();
    let path = c.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    // 1 s watchdog: a ping every 0.5 s while the engine answers.
    let mut child = spawn(&c, &path, Some(1_000_000));

    let first = until(&sock, "READY=1", 30, &c);
    let ready = first.last().unwrap();
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 without STATUS=: {ready:?}"));
    assert!(status.starts_with("serving: "), "{status:?}");
    assert!(status.contains("config generation"), "{status:?}");
    assert!(
        !first.iter().any(|m| m.contains("WATCHDOG=1")),
        "a ping before READY: {first:?}"
    );

    // Two pings, each within a watchdog interval of the last.
    let t = Instant::now();
    until(&sock, "WATCHDOG=1", 5, &c);
    until(&sock, "WATCHDOG=1", 2, &c);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(c
        .read("daemon.log")
        .contains("service watchdog on: pinging while the engine answers"));

    let st = stop(&mut child);
    let last = until(&sock, "STOPPING=1", 5, &c);
    assert!(last.last().unwrap().contains("STATUS=stopping"), "{last:?}");
    assert!(st.success(), "exit status {st}");
}

#[test]
fn no_watchdog_no_pings() {
    let c = config();
    let path = c.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut child = spawn(&c, &path, None);
    until(&sock, "READY=1", 30, &c);
    // STATUS= refreshes come only on change; no WATCHDOG=1 in 1.5 s.
    let t = Instant::now() + Duration::from_millis(1500);
    while let Some(m) = recv(&sock, t.saturating_duration_since(Instant::now())) {
        assert!(!m.contains("WATCHDOG=1"), "ping without a watchdog: {m:?}");
        if Instant::now() >= t {
            break;
        }
    }
    let st = stop(&mut child);
    until(&sock, "STOPPING=1", 5, &c);
    assert!(st.success(), "exit status {st}");
}
