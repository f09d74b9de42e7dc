fn main() -> std::process::ExitCode {
    rackboot::cli::main()
}
