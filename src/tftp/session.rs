//! One TFTP read transfer as a sans-IO state machine: no sockets, no clock,
//! no file access. The driver feeds it datagrams and timer expiries and
//! carries out the [`Action`]s it returns.
//!
//! Behaviour:
//! - RFC 1350 octet mode only. netascii and mail are **refused** with
//!   ERROR 4 (no conversion: it would make tsize and block offsets lie).
//! - RFC 2347 negotiation: if the request carries any option we understand,
//!   an OACK goes out first and data starts on ACK 0. Unknown options are
//!   ignored and never echoed.
//! - blksize (RFC 2348): honoured up to `max_blksize`. tsize (RFC 2349):
//!   the file size is reported. timeout (RFC 2349): echoed and used as the
//!   retransmission timer. windowsize (RFC 7440): capped to `max_window` (≤ 64).
//! - An ACK inside the outstanding window slides it; a duplicate or
//!   out-of-window ACK is ignored (never a resend: no Sorcerer's Apprentice).
//!   A timeout resends the whole outstanding window, `retries` times at most.
//! - Block numbers wrap 65535 → 0. A file whose size is a multiple of the
//!   block size ends with a zero-length block.
//! - Any ERROR from the client ends the session quietly.

use super::packet::{
    error_packet, ErrorCode, Mode, Packet, Request, DEFAULT_BLKSIZE, MAX_BLKSIZE, MIN_BLKSIZE,
};
use std::time::Duration;

/// Largest window the server will agree to.
pub const MAX_WINDOW: u16 = 64;

/// Server-side limits for one transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Largest block size agreed to (clamped to 8..=65464).
    pub max_blksize: u16,
    /// Largest window agreed to (clamped to 1..=64).
    pub max_window: u16,
    /// Retransmission timer unless the client negotiates `timeout`.
    pub timeout: Duration,
    /// Retransmissions of one window (or OACK) before giving up.
    pub retries: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_blksize: MAX_BLKSIZE,
            max_window: MAX_WINDOW,
            timeout: Duration::from_secs(2),
            retries: 5,
        }
    }
}

/// What the driver must do next, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this ready-made packet (OACK or ERROR) to the peer.
    Send(Vec<u8>),
    /// Send DATA `block` whose payload is file bytes `offset .. offset + len`.
    SendData { block: u16, offset: u64, len: usize },
    /// (Re)arm the retransmission timer; call [`Session::on_timeout`] when it fires.
    SetTimer(Duration),
    /// The client acknowledged the last block. The session is over.
    Done { bytes: u64 },
    /// The session is over without success. Any ERROR due to the peer has
    /// already been emitted as a `Send` before this.
    Fail(FailReason),
}

/// Why a session ended without success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// The client sent an ERROR. `negotiating` is true if it came before any
    /// DATA was sent, e.g. ERROR 8 after a tsize probe (OVMF, iPXE do this).
    ClientError {
        code: ErrorCode,
        message: String,
        negotiating: bool,
    },
    /// No progress after the configured retransmissions.
    TimedOut { retries: u32 },
    /// Request mode was not octet.
    UnsupportedMode(Mode),
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailReason::ClientError { code, message, .. } => {
                write!(f, "client sent ERROR {code}: {message:?}")
            }
            FailReason::TimedOut { retries } => {
                write!(f, "timed out after {retries} retransmissions")
            }
            FailReason::UnsupportedMode(m) => write!(f, "unsupported mode {}", m.as_str()),
        }
    }
}

/// The values in force for a session after negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    pub timeout: Duration,
    /// True if an OACK was sent.
    pub oack: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// OACK sent, waiting for ACK 0.
    Negotiating,
    Transferring,
    Finished,
}

/// One read transfer.
#[derive(Debug)]
pub struct Session {
    state: State,
    neg: Negotiated,
    file_len: u64,
    /// Number of DATA blocks including the final short (maybe empty) one.
    total_blocks: u64,
    /// Highest block (absolute, 1-based) the client acknowledged.
    acked: u64,
    /// Highest block (absolute) sent so far.
    sent_upto: u64,
    max_retries: u32,
    retries_left: u32,
    oack: Vec<u8>,
}

impl Session {
    /// Start a read transfer of a `file_len`-byte file. Returns the session and
    /// the first actions (OACK, or the first DATA window, or an ERROR + Fail).
    pub fn new(request: &Request, file_len: u64, cfg: &SessionConfig) -> (Session, Vec<Action>) {
        let max_blksize = cfg.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
        let max_window = cfg.max_window.clamp(1, MAX_WINDOW);
        let o = &request.options;
        let blksize = o.blksize.map_or(DEFAULT_BLKSIZE, |b| b.min(max_blksize));
        let windowsize = o.windowsize.map_or(1, |w| w.min(max_window));
        let timeout = o
            .timeout
            .map_or(cfg.timeout, |t| Duration::from_secs(t.into()));
        let mut oack = Vec::new();
        if o.any_known() {
            let mut pairs = Vec::new();
            if o.blksize.is_some() {
                pairs.push(("blksize".to_owned(), blksize.to_string()));
            }
            if o.tsize.is_some() {
                pairs.push(("tsize".to_owned(), file_len.to_string()));
            }
            if let Some(t) = o.timeout {
                pairs.push(("timeout".to_owned(), t.to_string()));
            }
            if o.windowsize.is_some() {
                pairs.push(("windowsize".to_owned(), windowsize.to_string()));
            }
            oack = Packet::Oack(pairs).encode();
        }
        let mut s = Session {
            state: State::Negotiating,
            neg: Negotiated {
                blksize,
                windowsize,
                timeout,
                oack: !oack.is_empty(),
            },
            file_len,
            total_blocks: file_len / u64::from(blksize) + 1,
            acked: 0,
            sent_upto: 0,
            max_retries: cfg.retries,
            retries_left: cfg.retries,
            oack,
        };
        if request.mode != Mode::Octet {
            s.state = State::Finished;
            let msg = format!("{} mode not supported, use octet", request.mode.as_str());
            let actions = vec![
                Action::Send(error_packet(ErrorCode::ILLEGAL_OPERATION, &msg)),
                Action::Fail(FailReason::UnsupportedMode(request.mode)),
            ];
            return (s, actions);
        }
        let actions = if s.neg.oack {
            vec![Action::Send(s.oack.clone()), Action::SetTimer(timeout)]
        } else {
            s.state = State::Transferring;
            s.send_window(1)
        };
        (s, actions)
    }

    pub fn negotiated(&self) -> Negotiated {
        self.neg
    }

    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// File bytes the client has acknowledged so far.
    pub fn bytes_acked(&self) -> u64 {
        (self.acked * u64::from(self.neg.blksize)).min(self.file_len)
    }

    /// True if no DATA has been sent yet.
    pub fn negotiating(&self) -> bool {
        self.sent_upto == 0
    }

    /// A datagram arrived from the peer's TID.
    pub fn on_packet(&mut self, datagram: &[u8]) -> Vec<Action> {
        if self.state == State::Finished {
            return Vec::new();
        }
        match Packet::parse(datagram) {
            Ok(Packet::Error { code, message }) => {
                let negotiating = self.negotiating();
                self.state = State::Finished;
                vec![Action::Fail(FailReason::ClientError {
                    code,
                    message,
                    negotiating,
                })]
            }
            Ok(Packet::Ack { block }) => self.on_ack(block),
            // Garbage and packets a reading client has no business sending
            // are ignored; the timer still runs.
            _ => Vec::new(),
        }
    }

    fn on_ack(&mut self, block: u16) -> Vec<Action> {
        match self.state {
            State::Negotiating if block == 0 => {
                self.state = State::Transferring;
                self.retries_left = self.max_retries;
                self.send_window(1)
            }
            State::Transferring => {
                // Map the 16-bit block number onto the outstanding window
                // (acked, sent_upto]; the window is far smaller than 65536,
                // so at most one absolute block matches.
                let ahead = u64::from(block.wrapping_sub(self.acked as u16));
                let n = self.acked + ahead;
                if ahead == 0 || n > self.sent_upto {
                    return Vec::new(); // duplicate or outside the window
                }
                self.acked = n;
                self.retries_left = self.max_retries;
                if n == self.total_blocks {
                    self.state = State::Finished;
                    return vec![Action::Done {
                        bytes: self.file_len,
                    }];
                }
                self.send_window(n + 1)
            }
            _ => Vec::new(),
        }
    }

    /// The timer set by the last `SetTimer` fired.
    pub fn on_timeout(&mut self) -> Vec<Action> {
        if self.state == State::Finished {
            return Vec::new();
        }
        if self.retries_left == 0 {
            self.state = State::Finished;
            return vec![
                Action::Send(error_packet(ErrorCode::NOT_DEFINED, "transfer timed out")),
                Action::Fail(FailReason::TimedOut {
                    retries: self.max_retries,
                }),
            ];
        }
        self.retries_left -= 1;
        match self.state {
            State::Negotiating => vec![
                Action::Send(self.oack.clone()),
                Action::SetTimer(self.neg.timeout),
            ],
            _ => {
                let mut actions = Vec::with_capacity((self.sent_upto - self.acked) as usize + 1);
                for n in self.acked + 1..=self.sent_upto {
                    actions.push(self.data(n));
                }
                actions.push(Action::SetTimer(self.neg.timeout));
                actions
            }
        }
    }

    fn data(&self, n: u64) -> Action {
        let offset = (n - 1) * u64::from(self.neg.blksize);
        let len = u64::from(self.neg.blksize).min(self.file_len.saturating_sub(offset));
        Action::SendData {
            block: n as u16,
            offset,
            len: len as usize,
        }
    }

    /// Send blocks `first ..` up to a full window or the last block.
    fn send_window(&mut self, first: u64) -> Vec<Action> {
        let last = (first + u64::from(self.neg.windowsize) - 1).min(self.total_blocks);
        let mut actions = Vec::with_capacity((last + 2 - first) as usize);
        for n in first..=last {
            actions.push(self.data(n));
        }
        self.sent_upto = self.sent_upto.max(last);
        actions.push(Action::SetTimer(self.neg.timeout));
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::super::packet::{RequestOptions, OP_ACK, OP_ERROR, OP_OACK};
    use super::*;

    fn req(opts: RequestOptions) -> Request {
        Request {
            filename: "f".into(),
            mode: Mode::Octet,
            options: opts,
        }
    }

    fn ack(b: u16) -> Vec<u8> {
        Packet::Ack { block: b }.encode()
    }

    fn cfg() -> SessionConfig {
        SessionConfig {
            max_blksize: 1468,
            max_window: 64,
            timeout: Duration::from_millis(500),
            retries: 3,
        }
    }

    /// The DATA blocks in `actions` as (block, offset, len).
    fn blocks(actions: &[Action]) -> Vec<(u16, u64, usize)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::SendData { block, offset, len } => Some((*block, *offset, *len)),
                _ => None,
            })
            .collect()
    }

    fn oack_pairs(actions: &[Action]) -> Option<Vec<(String, String)>> {
        actions.iter().find_map(|a| match a {
            Action::Send(p) if p[..2] == OP_OACK.to_be_bytes() => match Packet::parse(p) {
                Ok(Packet::Oack(pairs)) => Some(pairs),
                _ => None,
            },
            _ => None,
        })
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn plain_rrq_lockstep_512() {
        let (mut s, a) = Session::new(&req(Default::default()), 1000, &cfg());
        assert_eq!(
            a,
            vec![
                Action::SendData {
                    block: 1,
                    offset: 0,
                    len: 512
                },
                Action::SetTimer(Duration::from_millis(500))
            ]
        );
        assert_eq!(blocks(&s.on_packet(&ack(1))), vec![(2, 512, 488)]);
        assert_eq!(s.on_packet(&ack(2)), vec![Action::Done { bytes: 1000 }]);
        assert!(s.is_finished());
        assert!(s.on_timeout().is_empty());
        assert!(s.on_packet(&ack(2)).is_empty());
    }

    #[test]
    fn empty_file_is_one_empty_block() {
        let (mut s, a) = Session::new(&req(Default::default()), 0, &cfg());
        assert_eq!(blocks(&a), vec![(1, 0, 0)]);
        assert_eq!(s.on_packet(&ack(1)), vec![Action::Done { bytes: 0 }]);
    }

    #[test]
    fn exact_multiple_of_blksize_ends_with_empty_block() {
        let (mut s, a) = Session::new(&req(Default::default()), 1024, &cfg());
        assert_eq!(blocks(&a), vec![(1, 0, 512)]);
        assert_eq!(blocks(&s.on_packet(&ack(1))), vec![(2, 512, 512)]);
        assert_eq!(blocks(&s.on_packet(&ack(2))), vec![(3, 1024, 0)]);
        assert_eq!(s.on_packet(&ack(3)), vec![Action::Done { bytes: 1024 }]);
    }

    #[test]
    fn exact_multiple_with_window() {
        let o = RequestOptions {
            blksize: Some(100),
            windowsize: Some(4),
            ..Default::default()
        };
        let (mut s, _) = Session::new(&req(o), 400, &cfg());
        let a = s.on_packet(&ack(0));
        assert_eq!(
            blocks(&a),
            vec![(1, 0, 100), (2, 100, 100), (3, 200, 100), (4, 300, 100)]
        );
        assert_eq!(blocks(&s.on_packet(&ack(4))), vec![(5, 400, 0)]);
        assert_eq!(s.on_packet(&ack(5)), vec![Action::Done { bytes: 400 }]);
    }

    #[test]
    fn timeout_retransmits_then_gives_up() {
        let (mut s, _) = Session::new(&req(Default::default()), 2000, &cfg());
        for _ in 0..3 {
            let a = s.on_timeout();
            assert_eq!(blocks(&a), vec![(1, 0, 512)]);
            assert!(matches!(a.last(), Some(Action::SetTimer(_))));
        }
        let a = s.on_timeout();
        assert!(matches!(&a[0], Action::Send(p) if p[..2] == OP_ERROR.to_be_bytes()));
        assert_eq!(a[1], Action::Fail(FailReason::TimedOut { retries: 3 }));
        assert!(s.is_finished());
    }

    #[test]
    fn progress_resets_retries() {
        let (mut s, _) = Session::new(&req(Default::default()), 5000, &cfg());
        for blk in 1..=5u16 {
            for _ in 0..3 {
                assert_eq!(blocks(&s.on_timeout()).len(), 1);
            }
            assert_eq!(blocks(&s.on_packet(&ack(blk)))[0].0, blk + 1);
        }
    }

    #[test]
    fn oack_lost_is_resent_then_data_on_ack0() {
        let o = RequestOptions {
            blksize: Some(1024),
            tsize: Some(0),
            ..Default::default()
        };
        let (mut s, a) = Session::new(&req(o), 3000, &cfg());
        let want = pairs(&[("blksize", "1024"), ("tsize", "3000")]);
        assert_eq!(oack_pairs(&a), Some(want.clone()));
        assert!(blocks(&a).is_empty());
        // An ACK for a data block before ACK 0 is ignored.
        assert!(s.on_packet(&ack(1)).is_empty());
        assert_eq!(oack_pairs(&s.on_timeout()), Some(want));
        assert_eq!(blocks(&s.on_packet(&ack(0))), vec![(1, 0, 1024)]);
        assert!(s.on_packet(&ack(0)).is_empty(), "duplicate ACK 0");
    }

    #[test]
    fn window_loss_timeout_resends_whole_window() {
        let o = RequestOptions {
            blksize: Some(10),
            windowsize: Some(4),
            ..Default::default()
        };
        let (mut s, _) = Session::new(&req(o), 95, &cfg());
        s.on_packet(&ack(0));
        let a = s.on_timeout();
        assert_eq!(
            blocks(&a).iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
    }

    #[test]
    fn ack_inside_window_slides() {
        let o = RequestOptions {
            blksize: Some(10),
            windowsize: Some(4),
            ..Default::default()
        };
        let (mut s, _) = Session::new(&req(o), 95, &cfg());
        // Sent 1..=4; block 3 is lost, so the client acks 2 and the window
        // restarts at 3.
        s.on_packet(&ack(0));
        let a = s.on_packet(&ack(2));
        assert_eq!(
            blocks(&a).iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        // The rest of the client's duplicate ACK 2s are ignored (no SAS).
        assert!(s.on_packet(&ack(2)).is_empty());
        assert!(s.on_packet(&ack(1)).is_empty());
        // Out of window: a block not yet sent.
        assert!(s.on_packet(&ack(7)).is_empty());
        assert!(s.on_packet(&ack(60000)).is_empty());
        // Timeout resends only the outstanding window 3..=6.
        assert_eq!(
            blocks(&s.on_timeout())
                .iter()
                .map(|b| b.0)
                .collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        assert_eq!(
            blocks(&s.on_packet(&ack(6))),
            vec![(7, 60, 10), (8, 70, 10), (9, 80, 10), (10, 90, 5)]
        );
        assert!(s.on_packet(&ack(9)).len() == 2, "slide to 10 + timer");
        assert_eq!(s.on_packet(&ack(10)), vec![Action::Done { bytes: 95 }]);
    }

    #[test]
    fn duplicate_acks_never_resend_lockstep() {
        let (mut s, _) = Session::new(&req(Default::default()), 5000, &cfg());
        assert_eq!(blocks(&s.on_packet(&ack(1))).len(), 1);
        for _ in 0..10 {
            assert!(s.on_packet(&ack(1)).is_empty());
            assert!(s.on_packet(&ack(0)).is_empty());
        }
    }

    #[test]
    fn wraparound_past_65535_blocks() {
        // blksize 8, 70_000 full blocks + 3 bytes: 70_001 blocks.
        let o = RequestOptions {
            blksize: Some(8),
            windowsize: Some(16),
            ..Default::default()
        };
        let len = 70_000 * 8 + 3;
        let (mut s, a) = Session::new(&req(o), len, &cfg());
        assert!(oack_pairs(&a).is_some());
        let mut a = s.on_packet(&ack(0));
        let mut expect_abs: u64 = 1;
        let mut saw_zero = false;
        loop {
            let bl = blocks(&a);
            if bl.is_empty() {
                assert_eq!(a, vec![Action::Done { bytes: len }]);
                break;
            }
            for &(wire, offset, l) in &bl {
                assert_eq!(wire, expect_abs as u16);
                assert_eq!(offset, (expect_abs - 1) * 8);
                assert_eq!(l, if expect_abs == 70_001 { 3 } else { 8 });
                saw_zero |= wire == 0;
                expect_abs += 1;
            }
            // Every third window, simulate loss of the window's tail: ACK the
            // middle block (slide) and let the rest be resent.
            let (last, _, _) = *bl.last().unwrap();
            let ackb = if expect_abs.is_multiple_of(3) && bl.len() > 2 {
                let mid = bl[bl.len() / 2].0;
                expect_abs -= (bl.len() - bl.len() / 2 - 1) as u64;
                mid
            } else {
                last
            };
            a = s.on_packet(&ack(ackb));
        }
        assert!(saw_zero, "block number wrapped through 0");
        assert_eq!(s.bytes_acked(), len);
    }

    #[test]
    fn wraparound_exact_multiple_65536_blocks() {
        // 65535 full blocks of 8: final empty block is absolute 65536 → wire 0.
        let o = RequestOptions {
            blksize: Some(8),
            ..Default::default()
        };
        let len = 65_535 * 8;
        let (mut s, _) = Session::new(&req(o), len, &cfg());
        let mut a = s.on_packet(&ack(0));
        for n in 1..=65_535u32 {
            assert_eq!(blocks(&a)[0].0, n as u16);
            a = s.on_packet(&ack(n as u16));
        }
        assert_eq!(blocks(&a), vec![(0, len, 0)]);
        // A stale ACK 65535 again is a duplicate.
        assert!(s.on_packet(&ack(65535)).is_empty());
        assert_eq!(s.on_packet(&ack(0)), vec![Action::Done { bytes: len }]);
    }

    #[test]
    fn client_error_ends_quietly() {
        let o = RequestOptions {
            tsize: Some(0),
            ..Default::default()
        };
        let (mut s, _) = Session::new(&req(o), 4096, &cfg());
        let e = error_packet(ErrorCode::OPTION_NEGOTIATION, "tsize only");
        let a = s.on_packet(&e);
        assert_eq!(
            a,
            vec![Action::Fail(FailReason::ClientError {
                code: ErrorCode(8),
                message: "tsize only".into(),
                negotiating: true
            })]
        );
        assert!(s.is_finished());
        assert!(s.on_timeout().is_empty());

        // Mid-transfer: negotiating = false, still no ERROR sent back.
        let (mut s, _) = Session::new(&req(Default::default()), 4096, &cfg());
        s.on_packet(&ack(1));
        let a = s.on_packet(&error_packet(ErrorCode::DISK_FULL, "full"));
        assert!(matches!(
            &a[..],
            [Action::Fail(FailReason::ClientError {
                negotiating: false,
                ..
            })]
        ));
    }

    #[test]
    fn garbage_and_unexpected_packets_are_ignored() {
        let (mut s, _) = Session::new(&req(Default::default()), 4096, &cfg());
        for p in [
            vec![],
            vec![0],
            vec![0, 9, 9, 9],
            Packet::Data {
                block: 1,
                data: b"x",
            }
            .encode(),
            vec![0, OP_ACK as u8],
        ] {
            assert!(s.on_packet(&p).is_empty(), "{p:?}");
        }
        assert!(!s.is_finished());
    }

    #[test]
    fn netascii_and_mail_refused() {
        for m in [Mode::Netascii, Mode::Mail] {
            let r = Request {
                filename: "f".into(),
                mode: m,
                options: Default::default(),
            };
            let (s, a) = Session::new(&r, 10, &cfg());
            assert!(s.is_finished());
            let Action::Send(p) = &a[0] else { panic!() };
            assert!(matches!(
                Packet::parse(p),
                Ok(Packet::Error {
                    code: ErrorCode::ILLEGAL_OPERATION,
                    ..
                })
            ));
            assert_eq!(a[1], Action::Fail(FailReason::UnsupportedMode(m)));
        }
    }

    /// Negotiation table: request options → OACK contents and values in force.
    #[test]
    fn negotiation_table() {
        struct Case {
            opts: RequestOptions,
            cfg: SessionConfig,
            oack: Option<Vec<(String, String)>>,
            blksize: u16,
            window: u16,
            timeout: Duration,
        }
        let c = cfg();
        let big = SessionConfig {
            max_blksize: 65464,
            ..c
        };
        let small = SessionConfig {
            max_blksize: 1024,
            max_window: 8,
            ..c
        };
        let silly = SessionConfig {
            max_blksize: 0,
            max_window: 1000,
            ..c
        };
        let ro = |b: Option<u16>, t: Option<u64>, to: Option<u8>, w: Option<u16>| RequestOptions {
            blksize: b,
            tsize: t,
            timeout: to,
            windowsize: w,
            unknown: vec![],
        };
        let ms = Duration::from_millis(500);
        let cases = vec![
            // Absent: no OACK, RFC 1350 defaults.
            Case {
                opts: ro(None, None, None, None),
                cfg: c,
                oack: None,
                blksize: 512,
                window: 1,
                timeout: ms,
            },
            // Only unknown options: no OACK at all.
            Case {
                opts: RequestOptions {
                    unknown: vec![("multicast".into(), "".into())],
                    ..Default::default()
                },
                cfg: c,
                oack: None,
                blksize: 512,
                window: 1,
                timeout: ms,
            },
            // Honoured below the cap.
            Case {
                opts: ro(Some(1432), None, None, None),
                cfg: c,
                oack: Some(pairs(&[("blksize", "1432")])),
                blksize: 1432,
                window: 1,
                timeout: ms,
            },
            // Capped to max_blksize.
            Case {
                opts: ro(Some(8192), None, None, None),
                cfg: c,
                oack: Some(pairs(&[("blksize", "1468")])),
                blksize: 1468,
                window: 1,
                timeout: ms,
            },
            Case {
                opts: ro(Some(65464), None, None, Some(64)),
                cfg: big,
                oack: Some(pairs(&[("blksize", "65464"), ("windowsize", "64")])),
                blksize: 65464,
                window: 64,
                timeout: ms,
            },
            Case {
                opts: ro(Some(8), None, None, None),
                cfg: small,
                oack: Some(pairs(&[("blksize", "8")])),
                blksize: 8,
                window: 1,
                timeout: ms,
            },
            // tsize reports the size whatever the client sent.
            Case {
                opts: ro(None, Some(0), None, None),
                cfg: c,
                oack: Some(pairs(&[("tsize", "123456")])),
                blksize: 512,
                window: 1,
                timeout: ms,
            },
            Case {
                opts: ro(None, Some(77), None, None),
                cfg: c,
                oack: Some(pairs(&[("tsize", "123456")])),
                blksize: 512,
                window: 1,
                timeout: ms,
            },
            // timeout echoed and used.
            Case {
                opts: ro(None, None, Some(3), None),
                cfg: c,
                oack: Some(pairs(&[("timeout", "3")])),
                blksize: 512,
                window: 1,
                timeout: Duration::from_secs(3),
            },
            // windowsize capped to max_window, and to 64 whatever the config.
            Case {
                opts: ro(Some(1468), Some(0), Some(1), Some(16)),
                cfg: small,
                oack: Some(pairs(&[
                    ("blksize", "1024"),
                    ("tsize", "123456"),
                    ("timeout", "1"),
                    ("windowsize", "8"),
                ])),
                blksize: 1024,
                window: 8,
                timeout: Duration::from_secs(1),
            },
            Case {
                opts: ro(Some(65464), None, None, Some(65535)),
                cfg: silly,
                oack: Some(pairs(&[("blksize", "8"), ("windowsize", "64")])),
                blksize: 8,
                window: 64,
                timeout: ms,
            },
        ];
        for (i, k) in cases.into_iter().enumerate() {
            let (s, a) = Session::new(&req(k.opts), 123_456, &k.cfg);
            assert_eq!(oack_pairs(&a), k.oack, "case {i}");
            let n = s.negotiated();
            assert_eq!(
                (n.blksize, n.windowsize, n.timeout),
                (k.blksize, k.window, k.timeout),
                "case {i}"
            );
            assert_eq!(n.oack, oack_pairs(&a).is_some(), "case {i}");
            // Without an OACK data starts immediately.
            assert_eq!(blocks(&a).is_empty(), n.oack, "case {i}");
        }
    }
}
