//! Fuzz target `boot_routes`: see rackboot_fuzz::targets::BootRoutes.
fn main() {
    // AssertUnwindSafe: a panic aborts the process (afl), nothing is observed after one.
    let t = std::panic::AssertUnwindSafe(rackboot_fuzz::targets::BootRoutes::new());
    afl::fuzz!(|data: &[u8]| {
        t.run(data);
    });
}
