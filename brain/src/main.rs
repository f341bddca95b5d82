//! The `twinsync` binary.

fn main() -> std::process::ExitCode {
    twinsync::main_with_args(std::env::args_os())
}
