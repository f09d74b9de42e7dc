//! Fuzz target `config`: see rackboot_fuzz::targets::ConfigTarget.
fn main() {
    // AssertUnwindSafe: a panic aborts the process (afl), nothing is observed after one.
    let t = std::panic::AssertUnwindSafe(rackboot_fuzz::targets::ConfigTarget::new());
    afl::fuzz!(|data: &[u8]| {
        t.run(data);
    });
}
