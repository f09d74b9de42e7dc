//! Fuzz target `planted` (feature `planted-bug`, never in src/): the
//! demonstration that the fuzzer is coverage-guided. It walks a datagram's
//! DHCP options like `classify` does and panics when option 224 starts with
//! the bytes `RBFZ`, tested one byte at a time: random mutation alone hits
//! the 4-byte value with odds of 2^-32 per try at that offset; coverage
//! feedback keeps each input that passes one more comparison.
fn check(v: &[u8]) {
    // black_box: one load and one branch per byte (no merged 4-byte compare).
    let at = |i: usize| std::hint::black_box(v.get(i).copied());
    if at(0) == Some(b'R') {
        if at(1) == Some(b'B') {
            if at(2) == Some(b'F') {
                if at(3) == Some(b'Z') {
                    panic!("planted bug reached: option 224 = RBFZ");
                }
            }
        }
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let body = data.get(240..).unwrap_or(&[]);
        if let Ok(o) = rackboot::dhcp::opts::RawOptions::parse(body) {
            if let Some(v) = o.get(224) {
                check(v);
            }
        }
    });
}
