//! `latchkey`: the identity server's command line.

fn main() -> std::process::ExitCode {
    latchkey::cli::main()
}
