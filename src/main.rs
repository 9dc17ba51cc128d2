fn main() -> std::process::ExitCode {
    forge::cli::main()
}
