//! `[dns]`: the daemon in-process with its DNS server on a loopback port,
//! asked by a real client (`dig`, Debian's `bind9-dnsutils`): the sample
//! inventory's names and reverse names, a system added through the admin
//! API answering at once, NXDOMAIN in the zone, forwarding to a resolver
//! this test starts on loopback (hickory-proto), REFUSED without
//! forwarding, malformed queries dropped and counted. Without `dig` the
//! tests skip with a message, except under CI (`CI` /
//! `RACKBOOT_REQUIRE_TOOLS`), where they fail.

use crate::harness::{free_port, lab_in, tool, ConfigDir, Lab};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ZONE: &str = "lab.example";

/// The sample inventory (systems.toml): name → address.
const SAMPLE: [(&str, &str); 7] = [
    ("node50", "10.77.0.50"),
    ("node51", "10.77.0.51"),
    ("node52", "10.77.0.52"),
    ("node53", "10.77.0.53"),
    ("web70", "10.77.0.70"),
    ("cloud71", "10.77.0.71"),
    ("deb72", "10.77.0.72"),
];

/// The sample config with `[dns]` on a free loopback port, plus `extra` keys.
fn config(extra: &str) -> ConfigDir {
    let c = ConfigDir::sample();
    c.append(
        "rackboot.toml",
        &format!(
            "\n[dns]\nenabled = true\nlisten = \"127.0.0.1:0\"\nzone = \"{ZONE}\"\nttl = 30\n{extra}"
        ),
    );
    c
}

async fn start(extra: &str) -> Option<(Lab, Dig)> {
    let dig = Dig(tool(&["dig"])?);
    let l = lab_in(config(extra)).await;
    Some((l, dig))
}

fn server(l: &Lab) -> SocketAddr {
    l.d.dns_addr.expect("the DNS server runs")
}

/// `dig` itself.
struct Dig(PathBuf);

/// What dig printed, parsed.
#[derive(Debug)]
struct Answer {
    status: String,
    flags: Vec<String>,
    /// Records as whitespace-split fields: name, ttl, class, type, data…
    answer: Vec<Vec<String>>,
    authority: Vec<Vec<String>>,
    raw: String,
}

impl Answer {
    /// The data of the answer records of `rtype`.
    fn data(&self, rtype: &str) -> Vec<String> {
        self.answer
            .iter()
            .filter(|r| r.get(3).map(String::as_str) == Some(rtype))
            .map(|r| r[4..].join(" "))
            .collect()
    }

    fn has_soa(&self) -> bool {
        self.authority
            .iter()
            .any(|r| r.get(3).map(String::as_str) == Some("SOA") && r[0] == format!("{ZONE}."))
    }
}

impl Dig {
    async fn ask(&self, server: SocketAddr, args: &[&str]) -> Answer {
        let out = tokio::time::timeout(
            Duration::from_secs(15),
            tokio::process::Command::new(&self.0)
                .arg(format!("@{}", server.ip()))
                .args(["-p", &server.port().to_string(), "+time=3", "+tries=1"])
                .args(args)
                .output(),
        )
        .await
        .expect("dig finished")
        .expect("dig ran");
        let raw = String::from_utf8_lossy(&out.stdout).into_owned();
        parse(raw)
    }

    /// `dig NAME TYPE` over UDP.
    async fn q(&self, server: SocketAddr, name: &str, rtype: &str) -> Answer {
        self.ask(server, &[name, rtype]).await
    }
}

fn parse(raw: String) -> Answer {
    let mut a = Answer {
        status: String::new(),
        flags: vec![],
        answer: vec![],
        authority: vec![],
        raw: String::new(),
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(i) = line.find("status: ") {
            a.status = line[i + 8..].split(',').next().unwrap_or("").to_string();
        }
        if let Some(f) = line.strip_prefix(";; flags: ") {
            a.flags = f
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(String::from)
                .collect();
        }
        if let Some(s) = line
            .strip_prefix(";; ")
            .and_then(|s| s.strip_suffix(" SECTION:"))
        {
            section = match s {
                "ANSWER" => "answer",
                "AUTHORITY" => "authority",
                _ => "",
            };
            continue;
        }
        if line.trim().is_empty() {
            section = "";
            continue;
        }
        let fields: Vec<String> = line.split_whitespace().map(String::from).collect();
        match section {
            "answer" => a.answer.push(fields),
            "authority" => a.authority.push(fields),
            _ => {}
        }
    }
    a.raw = raw;
    a
}

/// Every name and reverse name of the sample inventory, over UDP and TCP;
/// AAAA is NODATA (the inventory has no IPv6 addresses); unknown names in
/// the zone are NXDOMAIN with the SOA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_the_sample_inventory() {
    let Some((l, dig)) = start("").await else {
        return;
    };
    let srv = server(&l);
    assert_eq!(l.d.inventory.borrow().systems().len(), SAMPLE.len());
    for (name, ip) in SAMPLE {
        for q in [format!("{name}.{ZONE}"), name.to_string()] {
            let a = dig.q(srv, &q, "A").await;
            assert_eq!(a.status, "NOERROR", "{q}: {}", a.raw);
            assert_eq!(a.data("A"), vec![ip.to_string()], "{q}: {}", a.raw);
            assert!(a.flags.contains(&"aa".to_string()), "{q}: {}", a.raw);
            assert_eq!(a.answer[0][1], "30", "the TTL: {}", a.raw);
        }
        let rev: Vec<&str> = ip.split('.').rev().collect();
        let rev = format!("{}.in-addr.arpa", rev.join("."));
        let a = dig.q(srv, &rev, "PTR").await;
        assert_eq!(a.status, "NOERROR", "{rev}: {}", a.raw);
        assert_eq!(a.data("PTR"), vec![format!("{name}.{ZONE}.")], "{}", a.raw);
        // `dig -x` builds the same reverse name.
        let x = dig.ask(srv, &["-x", ip]).await;
        assert_eq!(x.data("PTR"), vec![format!("{name}.{ZONE}.")], "{}", x.raw);
    }
    // Case does not matter; the answer keeps the question's spelling.
    let a = dig.q(srv, "WEB70.Lab.Example", "A").await;
    assert_eq!(a.data("A"), vec!["10.77.0.70"], "{}", a.raw);
    assert_eq!(a.answer[0][0], "WEB70.Lab.Example.", "{}", a.raw);
    // TCP.
    let a = dig.ask(srv, &["+tcp", "deb72.lab.example", "A"]).await;
    assert_eq!(a.data("A"), vec!["10.77.0.72"], "{}", a.raw);
    // IPv4 only: AAAA of a known name is NODATA, with the SOA.
    let a = dig.q(srv, "node50.lab.example", "AAAA").await;
    assert_eq!(a.status, "NOERROR", "{}", a.raw);
    assert!(a.answer.is_empty() && a.has_soa(), "{}", a.raw);
    // Unknown in the zone: NXDOMAIN with the SOA, over UDP and TCP.
    for tcp in ["+notcp", "+tcp"] {
        let a = dig.ask(srv, &[tcp, "node99.lab.example", "A"]).await;
        assert_eq!(a.status, "NXDOMAIN", "{}", a.raw);
        assert!(a.has_soa(), "{}", a.raw);
    }
    // The apex has its SOA.
    let a = dig.q(srv, ZONE, "SOA").await;
    assert_eq!(a.data("SOA").len(), 1, "{}", a.raw);
    // No upstream configured: other names are refused.
    let a = dig.q(srv, "example.org", "A").await;
    assert_eq!(a.status, "REFUSED", "{}", a.raw);

    let m = metrics(&l).await;
    assert!(
        counter(&m, "rackboot_dns_queries_total{transport=\"udp\"}") >= 30,
        "{m}"
    );
    assert!(
        counter(&m, "rackboot_dns_queries_total{transport=\"tcp\"}") >= 2,
        "{m}"
    );
    assert!(
        counter(&m, "rackboot_dns_replies_total{outcome=\"nxdomain\"}") >= 2,
        "{m}"
    );
    assert_eq!(
        counter(&m, "rackboot_dns_replies_total{outcome=\"refused\"}"),
        1,
        "{m}"
    );
    l.d.stop().await;
}

/// A system added through the admin API answers at once, and its removal
/// too: the server follows the inventory snapshot, no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_follows_admin_edits_at_once() {
    let Some((l, dig)) = start("").await else {
        return;
    };
    let srv = server(&l);
    let a = dig.q(srv, "node67.lab.example", "A").await;
    assert_eq!(a.status, "NXDOMAIN", "{}", a.raw);
    let new = serde_json::json!({
        "name": "node67", "macs": ["52:54:00:77:00:67"], "ip": "10.77.0.67", "profile": "lab",
    });
    let r = l.api("POST", "/api/v1/systems", Some(new), true).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let a = dig.q(srv, "node67.lab.example", "A").await;
    assert_eq!(a.data("A"), vec!["10.77.0.67"], "{}", a.raw);
    let a = dig.ask(srv, &["-x", "10.77.0.67"]).await;
    assert_eq!(a.data("PTR"), vec!["node67.lab.example."], "{}", a.raw);
    // The SOA's serial is the inventory generation: 2 after one edit.
    let a = dig.q(srv, ZONE, "SOA").await;
    assert_eq!(a.data("SOA")[0].split(' ').nth(2), Some("2"), "{}", a.raw);

    let r = l.api("DELETE", "/api/v1/systems/node67", None, true).await;
    assert!(r.status < 300, "{}", r.text());
    let a = dig.q(srv, "node67.lab.example", "A").await;
    assert_eq!(a.status, "NXDOMAIN", "{}", a.raw);
    l.d.stop().await;
}

/// A minimal resolver on loopback (hickory-proto): answers A queries with
/// 192.0.2.7, NXDOMAIN for names under `nx.`, and counts what it got.
async fn upstream() -> (SocketAddr, Arc<AtomicU64>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let n = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            n.fetch_add(1, Ordering::SeqCst);
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.queries = q.queries.clone();
            let name = q.queries[0].name().clone();
            if name.to_ascii().starts_with("nx.") {
                r.metadata.response_code = ResponseCode::NXDomain;
            } else if q.queries[0].query_type() == RecordType::A {
                r.add_answer(Record::from_rdata(
                    name,
                    5,
                    RData::A(A("192.0.2.7".parse().unwrap())),
                ));
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    (addr, seen)
}

/// Names outside the zone go to the upstream resolvers in order: a silent
/// first one times out, the second answers; its NXDOMAIN is relayed too;
/// TCP clients are forwarded as well; with no upstream answering, SERVFAIL
/// within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_forwards_outside_names_to_upstream() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (up, seen) = upstream().await;
    let extra = format!(
        "upstream = [\"{}\", \"{up}\"]\nupstream_timeout_ms = 300\n",
        silent.local_addr().unwrap()
    );
    let Some((l, dig)) = start(&extra).await else {
        return;
    };
    let srv = server(&l);
    let a = dig.q(srv, "www.example.org", "A").await;
    assert_eq!(a.status, "NOERROR", "{}", a.raw);
    assert_eq!(a.data("A"), vec!["192.0.2.7"], "{}", a.raw);
    assert!(a.flags.contains(&"ra".to_string()), "{}", a.raw);
    assert!(!a.flags.contains(&"aa".to_string()), "{}", a.raw);
    let a = dig.q(srv, "nx.example.org", "A").await;
    assert_eq!(a.status, "NXDOMAIN", "{}", a.raw);
    let a = dig.ask(srv, &["+tcp", "tcp.example.org", "A"]).await;
    assert_eq!(a.data("A"), vec!["192.0.2.7"], "{}", a.raw);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    // Our own names never go upstream.
    let a = dig.q(srv, "node50.lab.example", "A").await;
    assert_eq!(a.data("A"), vec!["10.77.0.50"], "{}", a.raw);
    let a = dig.q(srv, "node99.lab.example", "A").await;
    assert_eq!(a.status, "NXDOMAIN", "{}", a.raw);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    let m = metrics(&l).await;
    assert_eq!(
        counter(&m, "rackboot_dns_forwarded_total{result=\"answered\"}"),
        3,
        "{m}"
    );
    l.d.stop().await;

    // Only the silent one: SERVFAIL once its timeout is over.
    let extra = format!(
        "upstream = [\"{}\"]\nupstream_timeout_ms = 300\n",
        silent.local_addr().unwrap()
    );
    let l = lab_in(config(&extra)).await;
    let t = Instant::now();
    let a = dig.q(server(&l), "www.example.org", "A").await;
    assert_eq!(a.status, "SERVFAIL", "{}", a.raw);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let m = metrics(&l).await;
    assert_eq!(
        counter(&m, "rackboot_dns_forwarded_total{result=\"failed\"}"),
        1,
        "{m}"
    );
    l.d.stop().await;
}

/// `outside_zone = "refuse"`: an upstream is configured but never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_refuses_outside_names_when_forwarding_is_off() {
    let (up, seen) = upstream().await;
    let extra = format!("upstream = [\"{up}\"]\noutside_zone = \"refuse\"\n");
    let Some((l, dig)) = start(&extra).await else {
        return;
    };
    let srv = server(&l);
    for tcp in ["+notcp", "+tcp"] {
        let a = dig.ask(srv, &[tcp, "www.example.org", "A"]).await;
        assert_eq!(a.status, "REFUSED", "{}", a.raw);
    }
    let a = dig.ask(srv, &["-x", "192.0.2.1"]).await;
    assert_eq!(a.status, "REFUSED", "{}", a.raw);
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    let a = dig.q(srv, "cloud71.lab.example", "A").await;
    assert_eq!(a.data("A"), vec!["10.77.0.71"], "{}", a.raw);
    l.d.stop().await;
}

fn query_bytes(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// Garbage over UDP and TCP gets no answer and is counted by class; the
/// server keeps answering (the next query on the same TCP connection too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_drops_and_counts_malformed_queries() {
    let Some((l, dig)) = start("").await else {
        return;
    };
    let srv = server(&l);
    let c = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut response = Message::from_vec(&query_bytes(9, "node50.lab.example.")).unwrap();
    response.metadata.message_type = MessageType::Response;
    let mut no_question = Message::new(10, MessageType::Query, OpCode::Query);
    no_question.metadata.recursion_desired = true;
    let mut cut = query_bytes(11, "node50.lab.example.");
    cut.truncate(cut.len() - 2);
    let garbage: [Vec<u8>; 5] = [
        vec![0x42],
        vec![],
        cut,
        response.to_vec().unwrap(),
        no_question.to_vec().unwrap(),
    ];
    for g in &garbage {
        c.send_to(g, srv).await.unwrap();
    }
    let mut buf = [0u8; 1500];
    let got = tokio::time::timeout(Duration::from_millis(500), c.recv_from(&mut buf)).await;
    assert!(got.is_err(), "an answer to garbage: {got:?}");

    // The same over TCP, then a real query on that connection.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(srv).await.unwrap();
    for g in [vec![1u8, 2, 3], query_bytes(12, "node50.lab.example.")] {
        s.write_all(&(g.len() as u16).to_be_bytes()).await.unwrap();
        s.write_all(&g).await.unwrap();
    }
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_u16())
        .await
        .unwrap()
        .unwrap();
    let mut r = vec![0u8; n as usize];
    s.read_exact(&mut r).await.unwrap();
    let r = Message::from_vec(&r).unwrap();
    assert_eq!(r.metadata.id, 12);
    assert_eq!(r.answers.len(), 1);

    let a = dig.q(srv, "node51.lab.example", "A").await;
    assert_eq!(a.data("A"), vec!["10.77.0.51"], "{}", a.raw);
    let m = metrics(&l).await;
    for (reason, n) in [
        ("short", 3),
        ("undecodable", 1),
        ("response", 1),
        ("questions", 1),
    ] {
        let key = format!("rackboot_dns_malformed_total{{reason=\"{reason}\"}}");
        assert_eq!(counter(&m, &key), n, "{key}\n{m}");
    }
    let status = l.api("GET", "/api/v1/status", None, true).await.json();
    assert_eq!(
        status["protocols"]["dns"]["malformed"]["short"], 3,
        "{status}"
    );
    l.d.stop().await;
}

/// `rackboot serve` binds the DNS sockets before it tells the service
/// manager READY: the first query after READY is answered.
#[test]
fn dns_answers_once_serve_is_ready() {
    let Some(dig) = tool(&["dig"]) else {
        return;
    };
    let c = crate::notify::config();
    let port = free_port();
    c.append(
        "rackboot.toml",
        &format!("\n[dns]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nzone = \"{ZONE}\"\n"),
    );
    let path = c.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let mut child = crate::notify::spawn(&c, &path, None);
    crate::notify::until(&sock, "READY=1", 30, &c);
    let out = std::process::Command::new(&dig)
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(["+short", "node52.lab.example", "A"])
        .output()
        .unwrap();
    let st = crate::notify::stop(&mut child);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "10.77.0.52",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.read("daemon.log")
    );
    assert!(st.success());
}

async fn metrics(l: &Lab) -> String {
    let r = l.api("GET", "/metrics", None, true).await;
    assert_eq!(r.status, 200);
    r.text().to_string()
}

/// The value of the series `key` (name{labels}) in a scrape; 0 when absent.
fn counter(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}
