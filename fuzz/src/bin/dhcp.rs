//! Fuzz target `dhcp`: see rackboot_fuzz::targets::dhcp.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        rackboot_fuzz::targets::dhcp(data);
    });
}
