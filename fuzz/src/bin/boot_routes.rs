//! Fuzz target `boot_routes`: see rackboot_fuzz::targets::BootRoutes.
fn main() {
    let t = rackboot_fuzz::targets::BootRoutes::new();
    afl::fuzz!(|data: &[u8]| {
        t.run(data);
    });
}
