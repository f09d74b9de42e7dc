//! Fuzz target `config`: see rackboot_fuzz::targets::ConfigTarget.
fn main() {
    let t = rackboot_fuzz::targets::ConfigTarget::new();
    afl::fuzz!(|data: &[u8]| {
        t.run(data);
    });
}
