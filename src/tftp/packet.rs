//! TFTP wire format: RFC 1350 packets plus the RFC 2347 option extension
//! (RFC 2348 blksize, RFC 2349 tsize/timeout, RFC 7440 windowsize).
//!
//! [`Packet::parse`] never panics: every malformation is a typed [`ParseError`].
//! Requests and OACKs are parsed strictly (every string NUL-terminated, options
//! in name/value pairs, known option values inside their RFC range). Two
//! tolerances exist because real clients need them: trailing NUL padding after
//! a request's last string is ignored, and an ERROR packet's message does not
//! need its NUL (a client's ERROR must always end the transfer).

use std::fmt;

/// Smallest block size RFC 2348 allows.
pub const MIN_BLKSIZE: u16 = 8;
/// Largest block size RFC 2348 allows (65535 - 20 IP - 8 UDP - 4 TFTP - 39).
pub const MAX_BLKSIZE: u16 = 65464;
/// Block size without the blksize option (RFC 1350).
pub const DEFAULT_BLKSIZE: u16 = 512;

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

/// Transfer mode of a request (RFC 1350).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Netascii,
    Octet,
    Mail,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Netascii => "netascii",
            Mode::Octet => "octet",
            Mode::Mail => "mail",
        }
    }
}

/// A TFTP error code. Total over `u16`: unknown codes are kept as-is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    pub const NOT_DEFINED: ErrorCode = ErrorCode(0);
    pub const FILE_NOT_FOUND: ErrorCode = ErrorCode(1);
    pub const ACCESS_VIOLATION: ErrorCode = ErrorCode(2);
    pub const DISK_FULL: ErrorCode = ErrorCode(3);
    pub const ILLEGAL_OPERATION: ErrorCode = ErrorCode(4);
    pub const UNKNOWN_TID: ErrorCode = ErrorCode(5);
    pub const FILE_EXISTS: ErrorCode = ErrorCode(6);
    pub const NO_SUCH_USER: ErrorCode = ErrorCode(7);
    /// RFC 2347: the option negotiation was refused.
    pub const OPTION_NEGOTIATION: ErrorCode = ErrorCode(8);
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Options of a request that this server understands. Values are validated
/// against their RFC range while parsing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// RFC 2348, 8..=65464.
    pub blksize: Option<u16>,
    /// RFC 2349; a client sends 0 on RRQ to ask for the size.
    pub tsize: Option<u64>,
    /// RFC 2349, seconds, 1..=255.
    pub timeout: Option<u8>,
    /// RFC 7440, 1..=65535.
    pub windowsize: Option<u16>,
    /// Options not understood (lower-cased name, lossy value), in request order.
    /// Ignored by the server and never echoed in an OACK.
    pub unknown: Vec<(String, String)>,
}

impl RequestOptions {
    /// True if any option this server negotiates is present.
    pub fn any_known(&self) -> bool {
        self.blksize.is_some()
            || self.tsize.is_some()
            || self.timeout.is_some()
            || self.windowsize.is_some()
    }
}

/// An RRQ or WRQ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub filename: String,
    pub mode: Mode,
    pub options: RequestOptions,
}

/// One decoded TFTP packet. DATA borrows its payload from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request),
    Wrq(Request),
    Data { block: u16, data: &'a [u8] },
    Ack { block: u16 },
    Error { code: ErrorCode, message: String },
    Oack(Vec<(String, String)>),
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("packet too short ({0} bytes)")]
    TooShort(usize),
    #[error("unknown opcode {0}")]
    BadOpcode(u16),
    #[error("{0} is not NUL-terminated")]
    MissingNul(&'static str),
    #[error("filename is not valid UTF-8")]
    FilenameNotUtf8,
    #[error("empty filename")]
    EmptyFilename,
    #[error("unknown transfer mode {0:?}")]
    BadMode(String),
    #[error("empty option name")]
    EmptyOptionName,
    #[error("option {0:?} has no value")]
    OptionWithoutValue(String),
    #[error("invalid value {value:?} for option {name}")]
    InvalidOption { name: &'static str, value: String },
}

impl ParseError {
    /// True when the packet was a well-formed request whose option value was
    /// refused: answer with ERROR 8 (RFC 2347) rather than ERROR 4.
    pub fn is_option_error(&self) -> bool {
        matches!(self, ParseError::InvalidOption { .. })
    }
}

/// Split one NUL-terminated string off the front of `rest`.
fn take_cstr<'a>(rest: &mut &'a [u8], field: &'static str) -> Result<&'a [u8], ParseError> {
    let pos = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(ParseError::MissingNul(field))?;
    let s = &rest[..pos];
    *rest = &rest[pos + 1..];
    Ok(s)
}

/// Parse the option pairs after a request's mode or an OACK's opcode.
/// Trailing all-NUL padding is tolerated.
/// Raw (name, value) option strings.
type RawPairs<'a> = Vec<(&'a [u8], &'a [u8])>;

fn parse_pairs(mut rest: &[u8]) -> Result<RawPairs<'_>, ParseError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let name = take_cstr(&mut rest, "option name")?;
        if rest.is_empty() {
            return Err(ParseError::OptionWithoutValue(lossy(name)));
        }
        let value = take_cstr(&mut rest, "option value")?;
        if name.is_empty() {
            return Err(ParseError::EmptyOptionName);
        }
        out.push((name, value));
    }
    Ok(out)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A decimal option value: ASCII digits only, no sign, no blanks, fits u64.
fn parse_number(name: &'static str, value: &[u8]) -> Result<u64, ParseError> {
    let bad = || ParseError::InvalidOption {
        name,
        value: lossy(value),
    };
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    value
        .iter()
        .try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or_else(bad)
}

fn ranged(name: &'static str, value: &[u8], min: u64, max: u64) -> Result<u64, ParseError> {
    let n = parse_number(name, value)?;
    if n < min || n > max {
        return Err(ParseError::InvalidOption {
            name,
            value: lossy(value),
        });
    }
    Ok(n)
}

fn parse_request(rest: &[u8]) -> Result<Request, ParseError> {
    let mut rest = rest;
    let filename = take_cstr(&mut rest, "filename")?;
    let mode = take_cstr(&mut rest, "mode")?;
    let filename = std::str::from_utf8(filename)
        .map_err(|_| ParseError::FilenameNotUtf8)?
        .to_owned();
    if filename.is_empty() {
        return Err(ParseError::EmptyFilename);
    }
    let mode = if mode.eq_ignore_ascii_case(b"octet") {
        Mode::Octet
    } else if mode.eq_ignore_ascii_case(b"netascii") {
        Mode::Netascii
    } else if mode.eq_ignore_ascii_case(b"mail") {
        Mode::Mail
    } else {
        return Err(ParseError::BadMode(lossy(mode)));
    };
    let mut options = RequestOptions::default();
    // RFC 2347 names are case-insensitive. A repeated known option: first wins.
    for (name, value) in parse_pairs(rest)? {
        if name.eq_ignore_ascii_case(b"blksize") {
            let v = ranged("blksize", value, MIN_BLKSIZE.into(), MAX_BLKSIZE.into())?;
            options.blksize.get_or_insert(v as u16);
        } else if name.eq_ignore_ascii_case(b"tsize") {
            let v = parse_number("tsize", value)?;
            options.tsize.get_or_insert(v);
        } else if name.eq_ignore_ascii_case(b"timeout") {
            let v = ranged("timeout", value, 1, 255)?;
            options.timeout.get_or_insert(v as u8);
        } else if name.eq_ignore_ascii_case(b"windowsize") {
            let v = ranged("windowsize", value, 1, 65535)?;
            options.windowsize.get_or_insert(v as u16);
        } else {
            options
                .unknown
                .push((lossy(name).to_ascii_lowercase(), lossy(value)));
        }
    }
    Ok(Request {
        filename,
        mode,
        options,
    })
}

impl<'a> Packet<'a> {
    /// Decode one datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Packet<'a>, ParseError> {
        if buf.len() < 2 {
            return Err(ParseError::TooShort(buf.len()));
        }
        let op = u16::from_be_bytes([buf[0], buf[1]]);
        let rest = &buf[2..];
        let word = |rest: &[u8]| -> Result<u16, ParseError> {
            match rest {
                [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
                _ => Err(ParseError::TooShort(buf.len())),
            }
        };
        match op {
            OP_RRQ => parse_request(rest).map(Packet::Rrq),
            OP_WRQ => parse_request(rest).map(Packet::Wrq),
            OP_DATA => Ok(Packet::Data {
                block: word(rest)?,
                data: &rest[2..],
            }),
            // Trailing bytes after an ACK's block number are ignored.
            OP_ACK => Ok(Packet::Ack { block: word(rest)? }),
            OP_ERROR => {
                let code = ErrorCode(word(rest)?);
                let msg = &rest[2..];
                let end = msg.iter().position(|&b| b == 0).unwrap_or(msg.len());
                Ok(Packet::Error {
                    code,
                    message: lossy(&msg[..end]),
                })
            }
            OP_OACK => Ok(Packet::Oack(
                parse_pairs(rest)?
                    .into_iter()
                    .map(|(n, v)| (lossy(n), lossy(v)))
                    .collect(),
            )),
            other => Err(ParseError::BadOpcode(other)),
        }
    }

    /// Encode into a fresh buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Append the encoding to `out`. Strings containing NUL are cut at the NUL.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Packet::Rrq(r) => encode_request(OP_RRQ, r, out),
            Packet::Wrq(r) => encode_request(OP_WRQ, r, out),
            Packet::Data { block, data } => {
                out.extend_from_slice(&data_header(*block));
                out.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                out.extend_from_slice(&OP_ACK.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                out.extend_from_slice(&OP_ERROR.to_be_bytes());
                out.extend_from_slice(&code.0.to_be_bytes());
                put_cstr(out, message);
            }
            Packet::Oack(pairs) => {
                out.extend_from_slice(&OP_OACK.to_be_bytes());
                for (n, v) in pairs {
                    put_cstr(out, n);
                    put_cstr(out, v);
                }
            }
        }
    }
}

fn put_cstr(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    out.extend_from_slice(&b[..end]);
    out.push(0);
}

fn encode_request(op: u16, r: &Request, out: &mut Vec<u8>) {
    out.extend_from_slice(&op.to_be_bytes());
    put_cstr(out, &r.filename);
    put_cstr(out, r.mode.as_str());
    let o = &r.options;
    let known = [
        ("blksize", o.blksize.map(u64::from)),
        ("tsize", o.tsize),
        ("timeout", o.timeout.map(u64::from)),
        ("windowsize", o.windowsize.map(u64::from)),
    ];
    for (name, value) in known {
        if let Some(v) = value {
            put_cstr(out, name);
            put_cstr(out, &v.to_string());
        }
    }
    for (n, v) in &o.unknown {
        put_cstr(out, n);
        put_cstr(out, v);
    }
}

/// The 4-byte header of a DATA packet.
pub fn data_header(block: u16) -> [u8; 4] {
    let [a, b] = OP_DATA.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

/// Encode an ERROR packet.
pub fn error_packet(code: ErrorCode, message: &str) -> Vec<u8> {
    Packet::Error {
        code,
        message: message.to_owned(),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rrq(parts: &[&str]) -> Vec<u8> {
        let mut v = OP_RRQ.to_be_bytes().to_vec();
        for p in parts {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_plain_rrq() {
        let b = rrq(&["pxelinux.0", "OCTET"]);
        let p = Packet::parse(&b).unwrap();
        assert_eq!(
            p,
            Packet::Rrq(Request {
                filename: "pxelinux.0".into(),
                mode: Mode::Octet,
                options: RequestOptions::default(),
            })
        );
        assert_eq!(p.encode(), rrq(&["pxelinux.0", "octet"]));
    }

    #[test]
    fn parses_options_case_insensitive_first_wins_unknown_kept() {
        let b = rrq(&[
            "f",
            "octet",
            "BlkSize",
            "1468",
            "tsize",
            "0",
            "blksize",
            "512",
            "multicast",
            "",
            "windowsize",
            "16",
            "timeout",
            "3",
        ]);
        let Packet::Rrq(r) = Packet::parse(&b).unwrap() else {
            panic!()
        };
        assert_eq!(r.options.blksize, Some(1468));
        assert_eq!(r.options.tsize, Some(0));
        assert_eq!(r.options.windowsize, Some(16));
        assert_eq!(r.options.timeout, Some(3));
        assert_eq!(r.options.unknown, vec![("multicast".into(), String::new())]);
    }

    #[test]
    fn tolerates_trailing_nul_padding() {
        let mut b = rrq(&["f", "octet", "blksize", "1024"]);
        b.extend_from_slice(&[0, 0, 0]);
        assert!(Packet::parse(&b).is_ok());
    }

    #[test]
    fn typed_errors() {
        let cases: Vec<(Vec<u8>, ParseError)> = vec![
            (vec![], ParseError::TooShort(0)),
            (vec![0], ParseError::TooShort(1)),
            (vec![0, 9, 1], ParseError::BadOpcode(9)),
            (vec![0, 0], ParseError::BadOpcode(0)),
            (vec![0, 4, 1], ParseError::TooShort(3)),
            (vec![0, 3], ParseError::TooShort(2)),
            (b"\x00\x01file".to_vec(), ParseError::MissingNul("filename")),
            (
                b"\x00\x01file\x00octet".to_vec(),
                ParseError::MissingNul("mode"),
            ),
            (rrq(&["", "octet"]), ParseError::EmptyFilename),
            (rrq(&["f", "binary"]), ParseError::BadMode("binary".into())),
            (
                rrq(&["f", "octet", "blksize"]),
                ParseError::OptionWithoutValue("blksize".into()),
            ),
            (
                b"\x00\x01f\x00octet\x00blksize\x001468".to_vec(),
                ParseError::MissingNul("option value"),
            ),
            (rrq(&["f", "octet", "", "x"]), ParseError::EmptyOptionName),
            (
                b"\x00\x01\xff\xfe\x00octet\x00".to_vec(),
                ParseError::FilenameNotUtf8,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Packet::parse(&bytes), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn absurd_option_values_are_typed_errors() {
        let bad = [
            ("blksize", "0"),
            ("blksize", "7"),
            ("blksize", "65465"),
            ("blksize", "4294967296"),
            ("blksize", "99999999999999999999999"),
            ("blksize", "-1"),
            ("blksize", " 512"),
            ("blksize", "0x200"),
            ("blksize", ""),
            ("timeout", "0"),
            ("timeout", "256"),
            ("windowsize", "0"),
            ("windowsize", "65536"),
            ("tsize", "18446744073709551616"),
            ("tsize", "abc"),
        ];
        for (n, v) in bad {
            let e = Packet::parse(&rrq(&["f", "octet", n, v])).unwrap_err();
            assert!(e.is_option_error(), "{n}={v}: {e:?}");
        }
        for (n, v) in [
            ("blksize", "8"),
            ("blksize", "65464"),
            ("timeout", "255"),
            ("windowsize", "65535"),
            ("tsize", "18446744073709551615"),
        ] {
            assert!(
                Packet::parse(&rrq(&["f", "octet", n, v])).is_ok(),
                "{n}={v}"
            );
        }
    }

    #[test]
    fn error_message_nul_is_optional() {
        let p = Packet::parse(b"\x00\x05\x00\x08tsize probe").unwrap();
        assert_eq!(
            p,
            Packet::Error {
                code: ErrorCode::OPTION_NEGOTIATION,
                message: "tsize probe".into()
            }
        );
        let p = Packet::parse(b"\x00\x05\x00\x01").unwrap();
        assert!(matches!(
            p,
            Packet::Error {
                code: ErrorCode(1),
                ..
            }
        ));
    }

    #[test]
    fn encodes_data_ack_error_oack() {
        let d = Packet::Data {
            block: 0x1234,
            data: b"abc",
        };
        assert_eq!(d.encode(), b"\x00\x03\x12\x34abc");
        assert_eq!(Packet::parse(&d.encode()).unwrap(), d);
        assert_eq!(Packet::Ack { block: 65535 }.encode(), b"\x00\x04\xff\xff");
        assert_eq!(
            error_packet(ErrorCode::FILE_NOT_FOUND, "File not found"),
            b"\x00\x05\x00\x01File not found\x00"
        );
        let o = Packet::Oack(vec![("blksize".into(), "1468".into())]);
        assert_eq!(o.encode(), b"\x00\x06blksize\x001468\x00");
        assert_eq!(Packet::parse(&o.encode()).unwrap(), o);
    }

    /// Byte strings that look like TFTP: a plausible opcode and NUL-separated
    /// fields drawn from option-ish words, to reach the deeper parse paths.
    fn structured() -> impl Strategy<Value = Vec<u8>> {
        let word = prop_oneof![
            Just(b"blksize".to_vec()),
            Just(b"tsize".to_vec()),
            Just(b"timeout".to_vec()),
            Just(b"windowsize".to_vec()),
            Just(b"octet".to_vec()),
            Just(b"netascii".to_vec()),
            "[0-9]{0,22}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..12),
        ];
        (
            0u16..8,
            proptest::collection::vec(word, 0..10),
            any::<bool>(),
        )
            .prop_map(|(op, words, terminate)| {
                let mut v = op.to_be_bytes().to_vec();
                for (i, w) in words.iter().enumerate() {
                    v.extend_from_slice(w);
                    if terminate || i + 1 < words.len() {
                        v.push(0);
                    }
                }
                v
            })
    }

    fn valid_request() -> impl Strategy<Value = Request> {
        (
            "[a-zA-Z0-9/._-]{1,40}",
            prop_oneof![Just(Mode::Octet), Just(Mode::Netascii), Just(Mode::Mail)],
            proptest::option::of(MIN_BLKSIZE..=MAX_BLKSIZE),
            proptest::option::of(any::<u64>()),
            proptest::option::of(1u8..=255),
            proptest::option::of(1u16..=65535),
            proptest::collection::vec(("x[a-z]{0,8}", "[ -~]{0,8}"), 0..3),
        )
            .prop_map(
                |(filename, mode, blksize, tsize, timeout, windowsize, unknown)| Request {
                    filename,
                    mode,
                    options: RequestOptions {
                        blksize,
                        tsize,
                        timeout,
                        windowsize,
                        unknown,
                    },
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100_000))]

        /// Arbitrary bytes never panic, and whatever parses re-encodes to
        /// something that parses to the same packet.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(p) = Packet::parse(&bytes) {
                let again = p.encode();
                prop_assert_eq!(Packet::parse(&again), Ok(p));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn structured_bytes_never_panic(bytes in structured()) {
            let _ = Packet::parse(&bytes);
        }

        #[test]
        fn requests_round_trip(r in valid_request()) {
            let b = Packet::Rrq(r.clone()).encode();
            prop_assert_eq!(Packet::parse(&b).unwrap(), Packet::Rrq(r));
        }
    }
}
