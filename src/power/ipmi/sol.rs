//! Serial over LAN (IPMI v2.0 ch. 15 and 24), sans-IO: the SOL payload
//! (RMCP+ payload type 1) codec, the Activate Payload response, and the
//! console side of the SOL exchange ([`SolState`]): acknowledge every data
//! packet the BMC sends (once per sequence number, duplicates re-acked and
//! not delivered twice), send our own characters one packet at a time,
//! resend the part the BMC did not accept, retransmit on the driver's
//! timer, notice the BMC deactivating.
//!
//! Nothing here touches a socket or a clock: the driver (`console.rs`)
//! feeds decrypted SOL payloads in, sends what comes out and calls
//! [`SolState::on_timeout`] when its retransmission timer fires. Every
//! decoder returns an error on malformed input and never panics (proptest
//! below, and the `sol_payload` fuzz target).

use std::collections::VecDeque;

/// RMCP+ payload type of SOL.
pub const PAYLOAD_SOL: u8 = 0x01;
/// Activate Payload / Deactivate Payload (NetFn App).
pub const CMD_ACTIVATE_PAYLOAD: u8 = 0x48;
pub const CMD_DEACTIVATE_PAYLOAD: u8 = 0x49;
/// The SOL payload instance we use (the first; most BMCs have only it).
pub const SOL_INSTANCE: u8 = 1;
/// How often one of our data packets is sent without an ACK before it is
/// dropped (as the BMC side does, OpenIPMI's `MAX_SOL_RESENDS`).
pub const MAX_RESENDS: u32 = 4;

/// Operation/status bits (byte 4).
pub mod status {
    /// Both directions: the packet's characters were refused (buffer full).
    pub const NACK: u8 = 0x40;
    /// BMC → console: the serial port is not available to SOL.
    pub const CHAR_UNAVAILABLE: u8 = 0x20;
    /// BMC → console: SOL is being deactivated (last packet).
    pub const DEACTIVATING: u8 = 0x10;
    /// BMC → console: characters were dropped (transmit overrun).
    pub const OVERRUN: u8 = 0x08;
    /// BMC → console: a break was detected on the serial port.
    pub const BREAK: u8 = 0x04;
}

/// Why a SOL payload or an Activate Payload response could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolDecodeError {
    #[error("SOL payload of {0} bytes (need at least 4)")]
    Short(usize),
    #[error("Activate Payload response of {0} data bytes (need 12)")]
    ShortActivate(usize),
}

/// One SOL payload (24.2): four header bytes, then characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolPacket {
    /// Packet sequence number 1..=15; 0 = an ACK-only packet (no data).
    pub seq: u8,
    /// The packet this one ACKs/NACKs; 0 = none.
    pub ack_seq: u8,
    /// Characters of the ACKed packet that were accepted.
    pub accepted: u8,
    /// Operation (console → BMC) or status (BMC → console) bits.
    pub status: u8,
    pub data: Vec<u8>,
}

impl SolPacket {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.data.len());
        v.extend_from_slice(&[
            self.seq & 0x0f,
            self.ack_seq & 0x0f,
            self.accepted,
            self.status,
        ]);
        v.extend_from_slice(&self.data);
        v
    }

    pub fn decode(p: &[u8]) -> Result<SolPacket, SolDecodeError> {
        if p.len() < 4 {
            return Err(SolDecodeError::Short(p.len()));
        }
        Ok(SolPacket {
            seq: p[0] & 0x0f,
            ack_seq: p[1] & 0x0f,
            accepted: p[2],
            status: p[3],
            data: p[4..].to_vec(),
        })
    }
}

/// Activate Payload request data for SOL instance 1: encrypted and
/// authenticated, serial alerts deferred while SOL is active.
pub fn activate_request() -> [u8; 6] {
    [PAYLOAD_SOL, SOL_INSTANCE, 0xc4, 0, 0, 0]
}

/// Deactivate Payload request data for SOL instance 1.
pub fn deactivate_request() -> [u8; 6] {
    [PAYLOAD_SOL, SOL_INSTANCE, 0, 0, 0, 0]
}

/// Activate Payload response data (after the completion code, 24.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activated {
    /// Largest SOL payload data the BMC takes from us.
    pub inbound_max: u16,
    /// Largest SOL payload data the BMC sends.
    pub outbound_max: u16,
    /// UDP port the BMC sends SOL from (usually the session's).
    pub port: u16,
}

impl Activated {
    pub fn parse(d: &[u8]) -> Result<Activated, SolDecodeError> {
        if d.len() < 12 {
            return Err(SolDecodeError::ShortActivate(d.len()));
        }
        let u16le = |i: usize| u16::from_le_bytes([d[i], d[i + 1]]);
        Ok(Activated {
            inbound_max: u16le(4),
            outbound_max: u16le(6),
            port: u16le(8),
        })
    }
}

/// What one received SOL payload produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SolOutput {
    /// Console characters to deliver (never twice for one packet).
    pub data: Vec<u8>,
    /// SOL payloads to send (an ACK, our next data packet, or both in one).
    pub send: Option<Vec<u8>>,
    /// The BMC said it is deactivating SOL.
    pub deactivating: bool,
    /// The BMC reported dropped characters (overrun) or no serial port.
    pub overrun: bool,
    pub unavailable: bool,
}

/// The console side of one active SOL payload.
#[derive(Debug)]
pub struct SolState {
    /// Sequence number and length of the last BMC packet we took (0: none).
    last_rx_seq: u8,
    last_rx_len: u8,
    /// Our next (or in-flight) packet's sequence number, 1..=15.
    tx_seq: u8,
    /// Our data packet awaiting its ACK, and how often it was sent.
    unacked: Option<Vec<u8>>,
    sends: u32,
    queue: VecDeque<u8>,
    /// Characters per packet we send (the BMC's inbound payload size).
    chunk: usize,
    /// Characters dropped after `MAX_RESENDS` unanswered sends.
    pub dropped: u64,
}

impl SolState {
    /// `inbound_max`: from [`Activated`] (at least 1, at most 255 per packet).
    pub fn new(inbound_max: u16) -> SolState {
        SolState {
            last_rx_seq: 0,
            last_rx_len: 0,
            tx_seq: 1,
            unacked: None,
            sends: 0,
            queue: VecDeque::new(),
            chunk: usize::from(inbound_max).clamp(1, 255),
            dropped: 0,
        }
    }

    /// Whether one of our data packets awaits its ACK.
    pub fn awaiting_ack(&self) -> bool {
        self.unacked.is_some()
    }

    /// Characters typed at our end that are not yet accepted.
    pub fn backlog(&self) -> usize {
        self.queue.len() + self.unacked.as_ref().map_or(0, Vec::len)
    }

    fn next_seq(&mut self) {
        self.tx_seq = if self.tx_seq >= 15 {
            1
        } else {
            self.tx_seq + 1
        };
    }

    /// Our next data packet from the queue (nothing in flight), with an
    /// ACK of `ack` piggybacked.
    fn next_data(&mut self, ack: Option<(u8, u8)>) -> Option<Vec<u8>> {
        if self.unacked.is_some() || self.queue.is_empty() {
            return None;
        }
        let n = self.chunk.min(self.queue.len());
        let data: Vec<u8> = self.queue.drain(..n).collect();
        let (ack_seq, accepted) = ack.unwrap_or((0, 0));
        let p = SolPacket {
            seq: self.tx_seq,
            ack_seq,
            accepted,
            status: 0,
            data: data.clone(),
        };
        self.unacked = Some(data);
        self.sends = 1;
        Some(p.encode())
    }

    /// Characters to type into the console. Returns the packet to send when
    /// none is in flight.
    pub fn write(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.queue.extend(bytes);
        self.next_data(None)
    }

    /// The driver's retransmission timer fired: our in-flight packet again
    /// (same sequence number), or, after [`MAX_RESENDS`], drop it and send
    /// the next one.
    pub fn on_timeout(&mut self) -> Option<Vec<u8>> {
        let data = self.unacked.as_ref()?;
        if self.sends > MAX_RESENDS {
            self.dropped += data.len() as u64;
            self.unacked = None;
            self.next_seq();
            return self.next_data(None);
        }
        self.sends += 1;
        Some(
            SolPacket {
                seq: self.tx_seq,
                ack_seq: 0,
                accepted: 0,
                status: 0,
                data: data.clone(),
            }
            .encode(),
        )
    }

    /// One SOL payload from the BMC (decrypted, authenticated).
    pub fn on_payload(&mut self, payload: &[u8]) -> Result<SolOutput, SolDecodeError> {
        let p = SolPacket::decode(payload)?;
        let mut out = SolOutput {
            deactivating: p.status & status::DEACTIVATING != 0,
            overrun: p.status & status::OVERRUN != 0,
            unavailable: p.status & status::CHAR_UNAVAILABLE != 0,
            ..SolOutput::default()
        };
        let mut ack = None;
        if p.seq != 0 && !p.data.is_empty() {
            if p.seq != self.last_rx_seq {
                // New characters: take them all.
                self.last_rx_seq = p.seq;
                self.last_rx_len = u8::try_from(p.data.len()).unwrap_or(u8::MAX);
                out.data = p.data;
            }
            // New or a retransmission (our ACK was lost): ACK it.
            ack = Some((self.last_rx_seq, self.last_rx_len));
        }
        if p.ack_seq != 0 && p.ack_seq == self.tx_seq {
            if let Some(sent) = self.unacked.take() {
                if p.status & status::NACK != 0 {
                    // Refused for now: keep it; the timer resends it.
                    self.unacked = Some(sent);
                } else {
                    let took = usize::from(p.accepted).min(sent.len());
                    // The rest goes first in the next packet.
                    for &b in sent[took..].iter().rev() {
                        self.queue.push_front(b);
                    }
                    self.next_seq();
                }
            }
        }
        out.send = self.next_data(ack).or_else(|| {
            ack.map(|(seq, len)| {
                SolPacket {
                    seq: 0,
                    ack_seq: seq,
                    accepted: len,
                    status: 0,
                    data: Vec::new(),
                }
                .encode()
            })
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bmc(seq: u8, ack: u8, accepted: u8, st: u8, data: &[u8]) -> Vec<u8> {
        SolPacket {
            seq,
            ack_seq: ack,
            accepted,
            status: st,
            data: data.to_vec(),
        }
        .encode()
    }

    #[test]
    fn codec_round_trip_and_layout() {
        let p = SolPacket {
            seq: 3,
            ack_seq: 2,
            accepted: 5,
            status: status::NACK,
            data: b"hi".to_vec(),
        };
        assert_eq!(p.encode(), vec![3, 2, 5, 0x40, b'h', b'i']);
        assert_eq!(SolPacket::decode(&p.encode()), Ok(p));
        assert_eq!(SolPacket::decode(&[1, 2, 3]), Err(SolDecodeError::Short(3)));
        // High nibbles are reserved: ignored.
        assert_eq!(
            SolPacket::decode(&[0xf1, 0xe0, 0, 0]).map(|p| (p.seq, p.ack_seq)),
            Ok((1, 0))
        );
    }

    #[test]
    fn activate_response() {
        // ipmi_sim: aux 0, inbound 32, outbound 16384, port 623, VLAN 0xffff.
        let d = [0, 0, 0, 0, 32, 0, 0, 0x40, 0x6f, 0x02, 0xff, 0xff];
        assert_eq!(
            Activated::parse(&d),
            Ok(Activated {
                inbound_max: 32,
                outbound_max: 16384,
                port: 623
            })
        );
        assert!(Activated::parse(&d[..11]).is_err());
        assert_eq!(activate_request()[..2], [1, 1]);
        assert_eq!(deactivate_request()[..2], [1, 1]);
    }

    /// Table: BMC packets in, (delivered data, packet sent) out.
    #[test]
    fn receive_ack_and_duplicates() {
        let mut s = SolState::new(32);
        type Case<'a> = (Vec<u8>, &'a [u8], Option<Vec<u8>>);
        let cases: Vec<Case> = vec![
            // New data: delivered, ACKed with its length.
            (bmc(1, 0, 0, 0, b"boot"), b"boot", Some(vec![0, 1, 4, 0])),
            // The BMC did not get our ACK: same seq again, re-ACK, no data.
            (bmc(1, 0, 0, 0, b"boot"), b"", Some(vec![0, 1, 4, 0])),
            (
                bmc(2, 0, 0, 0, b"ing\r\n"),
                b"ing\r\n",
                Some(vec![0, 2, 5, 0]),
            ),
            // An ACK-only packet from the BMC for nothing of ours: nothing.
            (bmc(0, 3, 0, 0, b""), b"", None),
            // Sequence numbers wrap 15 → 1: a new packet.
            (bmc(15, 0, 0, 0, b"x"), b"x", Some(vec![0, 15, 1, 0])),
            (bmc(1, 0, 0, 0, b"y"), b"y", Some(vec![0, 1, 1, 0])),
        ];
        for (i, (pkt, data, send)) in cases.into_iter().enumerate() {
            let out = s.on_payload(&pkt).expect("decode");
            assert_eq!(out.data, data, "case {i}");
            assert_eq!(out.send, send, "case {i}");
        }
    }

    #[test]
    fn send_partial_accept_nack_and_piggyback() {
        let mut s = SolState::new(4);
        // Chunks of the BMC's inbound size; one packet in flight.
        assert_eq!(
            s.write(b"abcdef"),
            Some(vec![1, 0, 0, 0, b'a', b'b', b'c', b'd'])
        );
        assert_eq!(s.write(b"g"), None);
        assert!(s.awaiting_ack());
        // NACK: kept, resent by the timer with the same seq.
        let out = s.on_payload(&bmc(0, 1, 0, status::NACK, b"")).expect("ok");
        assert_eq!(out.send, None);
        assert_eq!(
            s.on_timeout(),
            Some(vec![1, 0, 0, 0, b'a', b'b', b'c', b'd'])
        );
        // Accepted 2 of 4: "cd" goes first in the next packet (seq 2),
        // which also ACKs the BMC's data that came with the ACK.
        let out = s.on_payload(&bmc(5, 1, 2, 0, b"Z")).expect("ok");
        assert_eq!(out.data, b"Z");
        assert_eq!(out.send, Some(vec![2, 5, 1, 0, b'c', b'd', b'e', b'f']));
        // An ACK for another seq is not ours.
        assert_eq!(s.on_payload(&bmc(0, 1, 4, 0, b"")).expect("ok").send, None);
        let out = s.on_payload(&bmc(0, 2, 4, 0, b"")).expect("ok");
        assert_eq!(out.send, Some(vec![3, 0, 0, 0, b'g']));
        let out = s.on_payload(&bmc(0, 3, 1, 0, b"")).expect("ok");
        assert_eq!(out.send, None);
        assert_eq!(s.backlog(), 0);
    }

    #[test]
    fn unanswered_packet_is_dropped_after_max_resends() {
        let mut s = SolState::new(32);
        assert!(s.write(b"ab").is_some());
        for _ in 0..MAX_RESENDS {
            assert_eq!(s.on_timeout(), Some(vec![1, 0, 0, 0, b'a', b'b']));
        }
        s.write(b"c");
        // Dropped; the next packet has the next seq.
        assert_eq!(s.on_timeout(), Some(vec![2, 0, 0, 0, b'c']));
        assert_eq!(s.dropped, 2);
        assert_eq!(SolState::new(32).on_timeout(), None);
    }

    #[test]
    fn status_bits() {
        let mut s = SolState::new(32);
        let out = s
            .on_payload(&bmc(0, 0, 0, status::DEACTIVATING | status::OVERRUN, b""))
            .expect("ok");
        assert!(out.deactivating && out.overrun && !out.unavailable);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn decoders_and_state_never_panic(
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..12),
            typed in proptest::collection::vec(any::<u8>(), 0..100),
            inbound in any::<u16>(),
        ) {
            let _ = Activated::parse(packets.first().map(Vec::as_slice).unwrap_or(&[]));
            let mut s = SolState::new(inbound);
            let _ = s.write(&typed);
            for p in &packets {
                if let Ok(out) = s.on_payload(p) {
                    // An ACK never claims more than a byte of length.
                    if let Some(send) = out.send {
                        prop_assert!(send.len() >= 4);
                        prop_assert!(send.len() <= 4 + 255);
                    }
                }
                let _ = s.on_timeout();
            }
            // Nothing typed is lost or duplicated except what was dropped.
            prop_assert!(s.backlog() as u64 + s.dropped <= typed.len() as u64 + 255 * 16);
        }
    }
}
