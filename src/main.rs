//! The `deploybot` binary: parses the command line and maps errors to exit codes.
//! Everything else lives in the library so tests can drive it without a process.

fn main() -> std::process::ExitCode {
    deploybot::cli::main()
}
