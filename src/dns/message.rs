//! Sans-IO: query bytes → what to do with them (a reply, a forward, or a
//! drop), on hickory-proto's wire format. The answer itself is
//! [`Names::lookup`]'s; this module only decodes and encodes.

use super::names::{Data, Lookup, Names, Qtype};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// The largest UDP answer we send (the DNS flag day 2020 figure), and the
/// payload size our EDNS OPT advertises.
pub const MAX_UDP: u16 = 1232;
/// Without EDNS a UDP answer is at most 512 bytes (RFC 1035).
const CLASSIC_UDP: usize = 512;
const HEADER: usize = 12;

/// Why a datagram or TCP message was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than a DNS header.
    Short,
    /// hickory-proto cannot decode it.
    Undecodable,
    /// A response (QR set): never answered (no reflection).
    Response,
    /// Not exactly one question.
    Questions,
}

impl Malformed {
    pub const ALL: [Malformed; 4] = [
        Malformed::Short,
        Malformed::Undecodable,
        Malformed::Response,
        Malformed::Questions,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Short => "short",
            Malformed::Undecodable => "undecodable",
            Malformed::Response => "response",
            Malformed::Questions => "questions",
        }
    }
}

/// What a reply we built said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Records from the inventory.
    Answer,
    /// The name exists, nothing of that type.
    NoData,
    NxDomain,
    /// Outside the zone with forwarding off, or a class other than IN.
    Refused,
    /// An opcode other than QUERY.
    NotImp,
    /// Every upstream failed or timed out.
    ServFail,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Answer,
        Outcome::NoData,
        Outcome::NxDomain,
        Outcome::Refused,
        Outcome::NotImp,
        Outcome::ServFail,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answer => "answer",
            Outcome::NoData => "nodata",
            Outcome::NxDomain => "nxdomain",
            Outcome::Refused => "refused",
            Outcome::NotImp => "notimp",
            Outcome::ServFail => "servfail",
        }
    }
}

/// What to do with one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    Reply {
        bytes: Vec<u8>,
        outcome: Outcome,
    },
    /// Not ours and forwarding is on: send the query upstream (the caller
    /// has the bytes; [`servfail`] if no upstream answers).
    Forward,
    Drop(Malformed),
}

/// One inventory generation, ready to answer: the index plus the zone's
/// wire names and SOA, built once.
pub struct Zone {
    pub names: Names,
    soa: Record,
    ttl: u32,
    forward: bool,
}

impl Zone {
    /// `ttl`: of every answer (and the SOA's minimum, the negative TTL);
    /// `forward`: names outside the zone are forwarded (else REFUSED).
    pub fn new(names: Names, ttl: u32, forward: bool) -> Zone {
        let apex = Name::from_ascii(format!("{}.", names.zone())).unwrap_or_else(|_| Name::root());
        let hostmaster = Name::from_ascii("hostmaster")
            .and_then(|h| h.append_domain(&apex))
            .unwrap_or_else(|_| apex.clone());
        // The serial follows the inventory: a reload is a new zone version.
        let serial = names.generation() as u32;
        let soa = SOA::new(apex.clone(), hostmaster, serial, 3600, 600, 86_400, ttl);
        Zone {
            soa: Record::from_rdata(apex, ttl, RData::SOA(soa)),
            names,
            ttl,
            forward,
        }
    }

    /// Decode `bytes` (from UDP when `udp`: the answer fits the client's
    /// size or is truncated) and decide.
    pub fn handle(&self, bytes: &[u8], udp: bool) -> Handled {
        let req = match decode(bytes) {
            Ok(m) => m,
            Err(m) => return Handled::Drop(m),
        };
        let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.recursion_available = self.forward;
        resp.metadata.checking_disabled = req.metadata.checking_disabled;
        resp.queries = req.queries.clone();
        if req.edns.is_some() {
            let mut e = Edns::new();
            e.set_max_payload(MAX_UDP);
            resp.set_edns(e);
        }
        let q = &req.queries[0];
        let outcome = if req.metadata.op_code != OpCode::Query {
            resp.metadata.response_code = ResponseCode::NotImp;
            Outcome::NotImp
        } else if q.query_class() != DNSClass::IN {
            resp.metadata.response_code = ResponseCode::Refused;
            Outcome::Refused
        } else {
            match self
                .names
                .lookup(&q.name().to_ascii(), qtype(q.query_type()))
            {
                Lookup::Outside if self.forward => return Handled::Forward,
                Lookup::Outside => {
                    resp.metadata.response_code = ResponseCode::Refused;
                    Outcome::Refused
                }
                Lookup::NxDomain => {
                    resp.metadata.authoritative = true;
                    resp.metadata.response_code = ResponseCode::NXDomain;
                    resp.add_authority(self.soa.clone());
                    Outcome::NxDomain
                }
                Lookup::Found { data, in_zone } => {
                    resp.metadata.authoritative = true;
                    if data.is_empty() {
                        if in_zone {
                            resp.add_authority(self.soa.clone());
                        }
                        Outcome::NoData
                    } else {
                        for d in data {
                            if let Some(r) = self.record(q, d) {
                                resp.add_answer(r);
                            }
                        }
                        Outcome::Answer
                    }
                }
            }
        };
        Handled::Reply {
            bytes: encode(&resp, udp.then(|| udp_limit(&req))),
            outcome,
        }
    }

    fn record(&self, q: &Query, d: Data) -> Option<Record> {
        let name = q.name().clone();
        Some(match d {
            Data::A(ip) => Record::from_rdata(name, self.ttl, RData::A(A(ip))),
            Data::Ptr(target) => {
                let target = Name::from_ascii(format!("{target}.")).ok()?;
                Record::from_rdata(name, self.ttl, RData::PTR(PTR(target)))
            }
            Data::Soa => self.soa.clone(),
        })
    }
}

fn decode(bytes: &[u8]) -> Result<Message, Malformed> {
    if bytes.len() < HEADER {
        return Err(Malformed::Short);
    }
    let m = Message::from_vec(bytes).map_err(|_| Malformed::Undecodable)?;
    if m.metadata.message_type != MessageType::Query {
        return Err(Malformed::Response);
    }
    if m.queries.len() != 1 {
        return Err(Malformed::Questions);
    }
    Ok(m)
}

fn qtype(t: RecordType) -> Qtype {
    match t {
        RecordType::A => Qtype::A,
        RecordType::AAAA => Qtype::Aaaa,
        RecordType::PTR => Qtype::Ptr,
        RecordType::SOA => Qtype::Soa,
        RecordType::ANY => Qtype::Any,
        _ => Qtype::Other,
    }
}

/// What a UDP answer to `req` may weigh.
fn udp_limit(req: &Message) -> usize {
    match &req.edns {
        Some(e) => usize::from(e.max_payload().clamp(CLASSIC_UDP as u16, MAX_UDP)),
        None => CLASSIC_UDP,
    }
}

/// Encode; over `limit`, the truncated form (TC set: the client asks again
/// over TCP).
fn encode(resp: &Message, limit: Option<usize>) -> Vec<u8> {
    let bytes = resp.to_vec().unwrap_or_else(|_| {
        let mut m = Message::error_msg(
            resp.metadata.id,
            resp.metadata.op_code,
            ResponseCode::ServFail,
        );
        m.queries = resp.queries.clone();
        m.to_vec().unwrap_or_default()
    });
    match limit {
        Some(l) if bytes.len() > l => resp.truncate().to_vec().unwrap_or_default(),
        _ => bytes,
    }
}

/// SERVFAIL for a query no upstream answered (`None`: undecodable, which
/// [`Zone::handle`] has already ruled out for a forwarded query).
pub fn servfail(query: &[u8], forward: bool) -> Option<Vec<u8>> {
    let req = decode(query).ok()?;
    let mut m = Message::error_msg(
        req.metadata.id,
        req.metadata.op_code,
        ResponseCode::ServFail,
    );
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = forward;
    m.queries = req.queries;
    m.to_vec().ok()
}

/// The ID and QR bit of a message, from its header alone (upstream answers
/// are relayed as they came, with the client's ID put back).
pub fn header_id(bytes: &[u8]) -> Option<(u16, bool)> {
    let h = hickory_proto::op::Header::read(&mut BinDecoder::new(bytes)).ok()?;
    Some((
        h.metadata.id,
        h.metadata.message_type == MessageType::Response,
    ))
}

/// `bytes` with its ID replaced.
pub fn with_id(bytes: &[u8], id: u16) -> Vec<u8> {
    let mut b = bytes.to_vec();
    if b.len() >= 2 {
        b[..2].copy_from_slice(&id.to_be_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Inventory, System};
    use crate::model::Mac;
    use crate::template::{Templates, Urls};
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn zone(forward: bool) -> Zone {
        let s = System {
            name: "node50".into(),
            hostname: "node50".into(),
            macs: vec![Mac([2, 0, 0, 0, 0, 1])],
            ip: Ipv4Addr::new(10, 77, 0, 50),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            gateway: None,
            dns: vec![],
            domain: None,
            profile: "p".into(),
            loader: None,
            bmc: None,
            vars: BTreeMap::new(),
        };
        let urls = Urls::new("http://10.77.0.1:8080", Ipv4Addr::new(10, 77, 0, 1));
        let mut inv = Inventory::new(vec![s], BTreeMap::new(), Templates::empty(), urls);
        inv.set_generation(3);
        Zone::new(Names::build(&inv, "lab.example"), 60, forward)
    }

    fn query(name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if let Some(p) = edns {
            let mut e = Edns::new();
            e.set_max_payload(p);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn reply(h: Handled) -> (Message, Outcome) {
        match h {
            Handled::Reply { bytes, outcome } => (Message::from_vec(&bytes).unwrap(), outcome),
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn answers_nxdomain_nodata_refused_forward() {
        let z = zone(false);
        let (m, o) = reply(z.handle(&query("NODE50.lab.example.", RecordType::A, None), true));
        assert_eq!(o, Outcome::Answer);
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert!(!m.metadata.recursion_available);
        assert_eq!(m.answers.len(), 1);
        // The owner name is the question's, case included.
        assert_eq!(m.answers[0].name.to_ascii(), "NODE50.lab.example.");
        assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(10, 77, 0, 50))));
        assert_eq!(m.answers[0].ttl, 60);

        let (m, o) = reply(z.handle(
            &query("50.0.77.10.in-addr.arpa.", RecordType::PTR, None),
            true,
        ));
        assert_eq!(o, Outcome::Answer);
        assert_eq!(
            m.answers[0].data,
            RData::PTR(PTR(Name::from_ascii("node50.lab.example.").unwrap()))
        );

        let (m, o) = reply(z.handle(&query("nope.lab.example.", RecordType::A, Some(4096)), true));
        assert_eq!(o, Outcome::NxDomain);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1);
        let RData::SOA(soa) = &m.authorities[0].data else {
            panic!("{m:?}")
        };
        assert_eq!(soa.serial, 3);
        assert_eq!(m.edns.as_ref().unwrap().max_payload(), MAX_UDP);

        let (m, o) = reply(z.handle(&query("node50.lab.example.", RecordType::AAAA, None), true));
        assert_eq!(o, Outcome::NoData);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty() && m.authorities.len() == 1);

        let (m, o) = reply(z.handle(&query("example.org.", RecordType::A, None), true));
        assert_eq!(o, Outcome::Refused);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);

        let z = zone(true);
        assert_eq!(
            z.handle(&query("example.org.", RecordType::A, None), true),
            Handled::Forward
        );
        let (m, _) = reply(z.handle(&query("node50.", RecordType::A, None), true));
        assert!(m.metadata.recursion_available);
    }

    #[test]
    fn malformed_is_dropped_with_its_class() {
        let z = zone(true);
        assert_eq!(z.handle(b"", true), Handled::Drop(Malformed::Short));
        assert_eq!(z.handle(&[0xff; 11], true), Handled::Drop(Malformed::Short));
        let mut q = query("node50.", RecordType::A, None);
        q.truncate(q.len() - 3);
        assert_eq!(z.handle(&q, true), Handled::Drop(Malformed::Undecodable));
        // A header claiming 3 questions and carrying none.
        let mut h = vec![0u8; 12];
        h[5] = 3;
        assert_eq!(z.handle(&h, true), Handled::Drop(Malformed::Undecodable));
        // No question at all.
        let none = Message::new(1, MessageType::Query, OpCode::Query);
        assert_eq!(
            z.handle(&none.to_vec().unwrap(), true),
            Handled::Drop(Malformed::Questions)
        );
        // A response sent to us.
        let mut r = Message::from_vec(&query("node50.", RecordType::A, None)).unwrap();
        r.metadata.message_type = MessageType::Response;
        assert_eq!(
            z.handle(&r.to_vec().unwrap(), true),
            Handled::Drop(Malformed::Response)
        );
        // Arbitrary bytes never panic.
        let mut x: u32 = 1;
        for len in 0..600 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = z.handle(&b, len % 2 == 0);
        }
    }

    #[test]
    fn other_opcodes_and_classes() {
        let z = zone(true);
        let mut m = Message::from_vec(&query("node50.", RecordType::A, None)).unwrap();
        m.metadata.op_code = OpCode::Status;
        let (r, o) = reply(z.handle(&m.to_vec().unwrap(), true));
        assert_eq!(
            (o, r.metadata.response_code),
            (Outcome::NotImp, ResponseCode::NotImp)
        );
        let mut m = Message::from_vec(&query("version.bind.", RecordType::TXT, None)).unwrap();
        m.queries[0].set_query_class(DNSClass::CH);
        let (_, o) = reply(z.handle(&m.to_vec().unwrap(), true));
        assert_eq!(o, Outcome::Refused);
    }

    #[test]
    fn udp_answers_over_the_limit_are_truncated() {
        let mut big = Message::response(5, OpCode::Query);
        let name = Name::from_ascii("many.lab.example.").unwrap();
        big.add_query(Query::query(name.clone(), RecordType::A));
        for i in 0..60u8 {
            let ip = Ipv4Addr::new(10, 0, 0, i);
            big.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A(ip))));
        }
        let full = encode(&big, None);
        assert!(full.len() > 512);
        assert_eq!(encode(&big, Some(full.len())), full);
        let cut = Message::from_vec(&encode(&big, Some(512))).unwrap();
        assert!(cut.metadata.truncation);
        assert!(cut.answers.is_empty());
        assert_eq!((cut.metadata.id, cut.queries.len()), (5, 1));
        // The limit: 512 without EDNS, the client's size with it, at most MAX_UDP.
        let q = |e| Message::from_vec(&query("a.", RecordType::A, e)).unwrap();
        assert_eq!(udp_limit(&q(None)), 512);
        assert_eq!(udp_limit(&q(Some(1000))), 1000);
        assert_eq!(udp_limit(&q(Some(4096))), usize::from(MAX_UDP));
        assert_eq!(udp_limit(&q(Some(100))), 512);
    }

    #[test]
    fn ids_and_servfail() {
        let q = query("example.org.", RecordType::A, None);
        assert_eq!(header_id(&q), Some((0x1234, false)));
        let moved = with_id(&q, 7);
        assert_eq!(header_id(&moved), Some((7, false)));
        let f = Message::from_vec(&servfail(&q, true).unwrap()).unwrap();
        assert_eq!(f.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(f.metadata.id, 0x1234);
        assert_eq!(f.queries.len(), 1);
        assert_eq!(header_id(b"x"), None);
    }
}
