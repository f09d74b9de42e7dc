//! Fuzz target `sol`: see rackboot_fuzz::targets::sol.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        rackboot_fuzz::targets::sol(data);
    });
}
