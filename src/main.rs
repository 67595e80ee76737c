fn main() -> std::process::ExitCode {
    banterhearts::cli::main()
}
