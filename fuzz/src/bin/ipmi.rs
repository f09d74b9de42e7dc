//! Fuzz target `ipmi`: see rackboot_fuzz::targets::ipmi.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        rackboot_fuzz::targets::ipmi(data);
    });
}
