//! The fuzz targets' bodies, one function per target: each takes the raw
//! input and must never panic (the `src/bin/*` wrappers hand them to AFL++).
//! Targets that need several messages (TFTP session, IPMI handshake and
//! session) read the input as records: `[kind u8][len u16 LE][len bytes]`.

pub mod targets;

/// Split `data` into `(kind, bytes)` records; a short tail ends the list.
pub fn records(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 3 && out.len() < 64 {
        let kind = data[0];
        let len = u16::from_le_bytes([data[1], data[2]]) as usize;
        let rest = &data[3..];
        let len = len.min(rest.len());
        out.push((kind, &rest[..len]));
        data = &rest[len..];
    }
    out
}

/// Encode records (for seeds and regression inputs).
pub fn encode_records(recs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, b) in recs {
        out.push(*k);
        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        out.extend_from_slice(b);
    }
    out
}
