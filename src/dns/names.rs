//! Which answer a name gets from an inventory: pure (no I/O, no clock, no
//! wire types), built once per inventory generation and asked per query.
//!
//! Names are compared lower case, without the trailing dot. A system is
//! found under its name (the `systems.toml` key), its hostname, each of
//! those under the zone, and its FQDN (`hostname.domain`, the system's own
//! `domain` or `dhcp.domain`). Its reverse name (`d.c.b.a.in-addr.arpa`)
//! points at its canonical name: the FQDN when it has a domain, else
//! `hostname.zone`. Inside the zone an unknown name is NXDOMAIN; a known
//! name without data of the asked type (AAAA: the inventory holds IPv4
//! addresses only) is NODATA; both carry the zone's SOA. Anything else is
//! [`Lookup::Outside`]: the server forwards or refuses it.

use crate::inventory::Inventory;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// A query type, as far as the inventory can answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qtype {
    A,
    Aaaa,
    Ptr,
    Soa,
    Any,
    /// Every other type: the name's existence is all we know.
    Other,
}

/// One piece of data an answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    A(Ipv4Addr),
    /// The canonical name a reverse name points at.
    Ptr(String),
    /// The zone's SOA (at the apex).
    Soa,
}

/// What a name gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name exists. `data` empty: NODATA. `in_zone`: the name is at or
    /// under the zone (the SOA goes with a NODATA answer).
    Found { data: Vec<Data>, in_zone: bool },
    /// Under the zone, and no system has it.
    NxDomain,
    /// Not ours: forward or refuse.
    Outside,
}

/// The index of one inventory generation.
#[derive(Debug, Default)]
pub struct Names {
    zone: String,
    /// Name → addresses (empty: an empty non-terminal inside the zone).
    by_name: HashMap<String, Vec<Ipv4Addr>>,
    /// Address → canonical name.
    by_ip: HashMap<Ipv4Addr, String>,
    generation: u64,
}

const REVERSE: &str = ".in-addr.arpa";

impl Names {
    /// Index `inv` for `zone` (lower case, no trailing dot).
    pub fn build(inv: &Inventory, zone: &str) -> Names {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        let mut n = Names {
            zone,
            by_name: HashMap::with_capacity(inv.systems().len() * 4),
            by_ip: HashMap::with_capacity(inv.systems().len()),
            generation: inv.generation(),
        };
        for s in inv.systems() {
            let name = s.name.to_ascii_lowercase();
            let host = s.hostname.to_ascii_lowercase();
            let fqdn = s.fqdn().to_ascii_lowercase();
            let canonical = if fqdn != host || host.contains('.') {
                fqdn.clone()
            } else {
                format!("{host}.{}", n.zone)
            };
            let in_zone = [format!("{name}.{}", n.zone), format!("{host}.{}", n.zone)];
            for key in [name, host, fqdn].into_iter().chain(in_zone) {
                n.add(key, s.ip);
            }
            n.by_ip.entry(s.ip).or_insert(canonical);
        }
        n
    }

    fn add(&mut self, key: String, ip: Ipv4Addr) {
        if !valid(&key) {
            return;
        }
        // An in-zone name's ancestors below the zone exist (empty non-terminals).
        if let Some(rel) = key.strip_suffix(&format!(".{}", self.zone)) {
            let mut rest = rel;
            while let Some((_, parent)) = rest.split_once('.') {
                self.by_name
                    .entry(format!("{parent}.{}", self.zone))
                    .or_default();
                rest = parent;
            }
        }
        let ips = self.by_name.entry(key).or_default();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }

    /// The zone this index answers for.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The inventory generation it was built from.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What `qname` (any case, trailing dot or not) gets for `qtype`.
    pub fn lookup(&self, qname: &str, qtype: Qtype) -> Lookup {
        let q = qname
            .strip_suffix('.')
            .unwrap_or(qname)
            .to_ascii_lowercase();
        let in_zone = q == self.zone || q.ends_with(&format!(".{}", self.zone));
        if q == self.zone {
            let data = match qtype {
                Qtype::Soa | Qtype::Any => vec![Data::Soa],
                _ => vec![],
            };
            return Lookup::Found { data, in_zone };
        }
        if let Some(rev) = q.strip_suffix(REVERSE) {
            return match reverse_ip(rev).and_then(|ip| self.by_ip.get(&ip)) {
                Some(target) => Lookup::Found {
                    data: match qtype {
                        Qtype::Ptr | Qtype::Any => vec![Data::Ptr(target.clone())],
                        _ => vec![],
                    },
                    in_zone,
                },
                None => Lookup::Outside,
            };
        }
        match self.by_name.get(&q) {
            Some(ips) => Lookup::Found {
                data: match qtype {
                    Qtype::A | Qtype::Any => ips.iter().map(|ip| Data::A(*ip)).collect(),
                    _ => vec![],
                },
                in_zone,
            },
            None if in_zone => Lookup::NxDomain,
            None => Lookup::Outside,
        }
    }
}

/// `d.c.b.a` (the labels before `.in-addr.arpa`) → `a.b.c.d`; only full
/// four-label host names.
fn reverse_ip(rev: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut labels = rev.split('.');
    for o in octets.iter_mut().rev() {
        let l = labels.next()?;
        // "01" is not how a reverse name writes 1.
        if l.is_empty() || (l.len() > 1 && l.starts_with('0')) {
            return None;
        }
        *o = l.parse().ok()?;
    }
    labels.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// A name a query can carry: labels of 1..=63 bytes, 253 in all.
fn valid(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(|l| (1..=63).contains(&l.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::System;
    use crate::model::Mac;
    use crate::template::{Templates, Urls};
    use std::collections::BTreeMap;

    fn system(name: &str, host: &str, domain: Option<&str>, ip: [u8; 4]) -> System {
        System {
            name: name.into(),
            hostname: host.into(),
            macs: vec![Mac([2, 0, 0, 0, 0, ip[3]])],
            ip: Ipv4Addr::from(ip),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            gateway: None,
            dns: vec![],
            domain: domain.map(Into::into),
            profile: "p".into(),
            loader: None,
            bmc: None,
            vars: BTreeMap::new(),
        }
    }

    fn names() -> Names {
        let systems = vec![
            system("node50", "node50", None, [10, 77, 0, 50]),
            system("web70", "web70", Some("lab.example"), [10, 77, 0, 70]),
            system("db", "Postgres", Some("corp.example"), [10, 77, 0, 80]),
            system("deep", "a.b", None, [10, 77, 0, 90]),
        ];
        let urls = Urls::new("http://10.77.0.1:8080", Ipv4Addr::new(10, 77, 0, 1));
        let mut inv = Inventory::new(systems, BTreeMap::new(), Templates::empty(), urls);
        inv.set_generation(7);
        Names::build(&inv, "Lab.Example.")
    }

    fn a(ip: [u8; 4]) -> Vec<Data> {
        vec![Data::A(Ipv4Addr::from(ip))]
    }

    fn found(data: Vec<Data>, in_zone: bool) -> Lookup {
        Lookup::Found { data, in_zone }
    }

    #[test]
    fn table() {
        use Qtype::*;
        let n = names();
        assert_eq!(n.zone(), "lab.example");
        assert_eq!(n.generation(), 7);
        let ptr = |s: &str| vec![Data::Ptr(s.into())];
        let cases: Vec<(&str, Qtype, Lookup)> = vec![
            // Bare name, name in the zone, case and trailing dot.
            ("node50", A, found(a([10, 77, 0, 50]), false)),
            ("node50.lab.example", A, found(a([10, 77, 0, 50]), true)),
            ("NODE50.Lab.Example.", A, found(a([10, 77, 0, 50]), true)),
            ("node50.lab.example", Any, found(a([10, 77, 0, 50]), true)),
            // Known name, no data of that type: NODATA (IPv4-only inventory).
            ("node50.lab.example", Aaaa, found(vec![], true)),
            ("node50.lab.example", Other, found(vec![], true)),
            ("node50", Aaaa, found(vec![], false)),
            // Own domain outside the zone: the FQDN, the hostname, the name.
            ("postgres.corp.example", A, found(a([10, 77, 0, 80]), false)),
            ("postgres", A, found(a([10, 77, 0, 80]), false)),
            ("db.lab.example", A, found(a([10, 77, 0, 80]), true)),
            ("other.corp.example", A, Lookup::Outside),
            // A dotted hostname, and its empty non-terminal in the zone.
            ("a.b.lab.example", A, found(a([10, 77, 0, 90]), true)),
            ("b.lab.example", A, found(vec![], true)),
            // Unknown inside the zone: NXDOMAIN; outside: not ours.
            ("nope.lab.example", A, Lookup::NxDomain),
            ("x.node50.lab.example", A, Lookup::NxDomain),
            ("example.org", A, Lookup::Outside),
            ("lab.example.org", A, Lookup::Outside),
            ("xlab.example", A, Lookup::Outside),
            // The apex.
            ("lab.example", Soa, found(vec![Data::Soa], true)),
            ("lab.example", A, found(vec![], true)),
            // Reverse names: the canonical name.
            (
                "50.0.77.10.in-addr.arpa",
                Ptr,
                found(ptr("node50.lab.example"), false),
            ),
            (
                "70.0.77.10.IN-ADDR.ARPA.",
                Ptr,
                found(ptr("web70.lab.example"), false),
            ),
            (
                "80.0.77.10.in-addr.arpa",
                Ptr,
                found(ptr("postgres.corp.example"), false),
            ),
            ("90.0.77.10.in-addr.arpa", Ptr, found(ptr("a.b"), false)),
            ("50.0.77.10.in-addr.arpa", A, found(vec![], false)),
            ("51.0.77.10.in-addr.arpa", Ptr, Lookup::Outside),
            ("0.77.10.in-addr.arpa", Ptr, Lookup::Outside),
            ("050.0.77.10.in-addr.arpa", Ptr, Lookup::Outside),
            ("1.50.0.77.10.in-addr.arpa", Ptr, Lookup::Outside),
            ("300.0.77.10.in-addr.arpa", Ptr, Lookup::Outside),
            ("", A, Lookup::Outside),
            (".", A, Lookup::Outside),
        ];
        for (q, t, want) in cases {
            assert_eq!(n.lookup(q, t), want, "{q} {t:?}");
        }
    }

    #[test]
    fn a_name_two_systems_answer_to_has_both_addresses() {
        // One system's hostname is another's name.
        let systems = vec![
            system("x", "web", None, [10, 0, 0, 1]),
            system("web", "y", None, [10, 0, 0, 2]),
        ];
        let urls = Urls::new("http://10.0.0.9:8080", Ipv4Addr::new(10, 0, 0, 9));
        let inv = Inventory::new(systems, BTreeMap::new(), Templates::empty(), urls);
        let n = Names::build(&inv, "z");
        let both = vec![
            Data::A(Ipv4Addr::new(10, 0, 0, 2)),
            Data::A(Ipv4Addr::new(10, 0, 0, 1)),
        ];
        let mut got = n.lookup("web.z", Qtype::A);
        if let Lookup::Found { data, .. } = &mut got {
            data.sort_by_key(|d| std::cmp::Reverse(format!("{d:?}")));
        }
        assert_eq!(got, found(both, true));
        // The empty inventory: NXDOMAIN in the zone, nothing outside it.
        let empty = Names::build(
            &Inventory::empty(Urls::new("http://h", Ipv4Addr::LOCALHOST)),
            "z",
        );
        assert_eq!(empty.lookup("x.z", Qtype::A), Lookup::NxDomain);
        assert_eq!(empty.lookup("x", Qtype::A), Lookup::Outside);
    }
}
