//! TLS on the API/UI listener, with the real binary and certificates made
//! by `openssl`: the CLI trusts `--ca-file`, `RACKBOOT_CA` or the daemon's
//! own chain file, refuses a certificate from another CA, and SIGHUP swaps
//! the certificate (a broken pair is refused and the old one keeps serving).

use crate::harness::{free_port, ConfigDir};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/install-deps.sh installs it)");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA (`NAME-ca.pem`) and a server certificate for 127.0.0.1 that it
/// signed, written as a chain (`NAME-chain.pem`: server, then CA) with its
/// key (`NAME-key.pem`).
fn pki(dir: &Path, name: &str) {
    let ca_key = format!("{name}-ca-key.pem");
    let ca = format!("{name}-ca.pem");
    let key = format!("{name}-key.pem");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.pem");
    let ext = format!("{name}.ext");
    #[rustfmt::skip]
    openssl(dir, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &format!("/CN={name} lab CA")]);
    #[rustfmt::skip]
    openssl(dir, &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", &key, "-out", &csr, "-subj", "/CN=rackboot"]);
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    #[rustfmt::skip]
    openssl(dir, &["x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial",
        "-out", &crt, "-days", "2", "-extfile", &ext]);
    let chain = std::fs::read_to_string(dir.join(&crt)).unwrap()
        + &std::fs::read_to_string(dir.join(&ca)).unwrap();
    std::fs::write(dir.join(format!("{name}-chain.pem")), chain).unwrap();
}

struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn api_over_tls_trusts_the_right_ca_and_reloads_on_sighup() {
    let c = ConfigDir::sample();
    let pki_dir = c.path().join("tls");
    std::fs::create_dir_all(&pki_dir).unwrap();
    pki(&pki_dir, "one");
    pki(&pki_dir, "two");
    std::fs::copy(pki_dir.join("one-chain.pem"), c.path().join("api-cert.pem")).unwrap();
    std::fs::copy(pki_dir.join("one-key.pem"), c.path().join("api-key.pem")).unwrap();
    let (hp, ap) = (free_port(), free_port());
    c.use_loopback(hp, ap);
    // No DHCP or TFTP: other tests bind those ports.
    c.replace("rackboot.toml", "mode = \"reservations\"", "mode = \"off\"");
    c.replace("rackboot.toml", "[tftp]\n", "[tftp]\nenabled = false\n");
    c.replace(
        "rackboot.toml",
        "[api]\n",
        "[api]\ntls_cert = \"api-cert.pem\"\ntls_key = \"api-key.pem\"\n",
    );
    let log = c.path().join("daemon.log");
    let d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_rackboot"))
            .args(["serve", "--config"])
            .arg(c.path())
            .env("RACKBOOT_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let api = format!("127.0.0.1:{ap}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&api).is_err() {
        assert!(
            Instant::now() < deadline,
            "daemon did not start: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rb = |args: &[&str], env: &[(&str, &Path)]| -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rackboot"));
        cmd.args(args).arg("--config").arg(c.path());
        cmd.env_remove("RACKBOOT_CA").env_remove("RACKBOOT_API");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let ok = |o: &Output| {
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let refused = |o: &Output| {
        let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("error: tls: invalid peer certificate: unknownissuer"),
            "{err}"
        );
        assert!(err.contains("--ca-file"), "{err}");
    };
    let one = pki_dir.join("one-ca.pem");
    let two = pki_dir.join("two-ca.pem");
    let (one_s, two_s) = (one.to_str().unwrap(), two.to_str().unwrap());
    let https = format!("https://127.0.0.1:{ap}");
    // The right CA, by flag and by environment; the daemon's own chain file.
    ok(&rb(&["audit", "--ca-file", one_s], &[]));
    ok(&rb(&["audit"], &[("RACKBOOT_CA", &one)]));
    ok(&rb(&["audit", "--api", &https], &[]));
    ok(&rb(
        &[
            "audit",
            "--api",
            &format!("https://localhost:{ap}"),
            "--ca-file",
            one_s,
        ],
        &[],
    ));
    // Another CA is refused; plain HTTP gets no answer from a TLS port.
    refused(&rb(&["audit", "--ca-file", two_s], &[]));
    let plain = rb(&["audit", "--api", &format!("http://127.0.0.1:{ap}")], &[]);
    assert!(!plain.status.success());

    // SIGHUP with a key that does not fit: refused, the old pair serves on.
    std::fs::copy(pki_dir.join("two-chain.pem"), c.path().join("api-cert.pem")).unwrap();
    let hup = || {
        assert!(Command::new("kill")
            .args(["-HUP", &d.0.id().to_string()])
            .status()
            .unwrap()
            .success());
    };
    let wait_log = |needle: &str, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let l = std::fs::read_to_string(&log).unwrap();
            if l.matches(needle).count() >= n {
                return l;
            }
            assert!(Instant::now() < deadline, "log never said {needle:?}:\n{l}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    hup();
    let l = wait_log("API TLS certificate not reloaded", 1);
    assert!(l.contains("api-key.pem"), "{l}");
    ok(&rb(&["audit", "--ca-file", one_s], &[]));
    // The whole new pair: now CA two is the one trusted.
    std::fs::copy(pki_dir.join("two-key.pem"), c.path().join("api-key.pem")).unwrap();
    hup();
    wait_log("API TLS certificate reloaded", 1);
    ok(&rb(&["audit", "--ca-file", two_s], &[]));
    refused(&rb(&["audit", "--ca-file", one_s], &[]));
    // The key never reaches the log.
    let key = std::fs::read_to_string(c.path().join("api-key.pem")).unwrap();
    let body = key.lines().nth(1).unwrap();
    assert!(!std::fs::read_to_string(&log).unwrap().contains(body));
}
