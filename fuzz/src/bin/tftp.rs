//! Fuzz target `tftp`: see rackboot_fuzz::targets::tftp.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        rackboot_fuzz::targets::tftp(data);
    });
}
