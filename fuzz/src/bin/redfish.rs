//! Fuzz target `redfish`: see rackboot_fuzz::targets::redfish.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        rackboot_fuzz::targets::redfish(data);
    });
}
