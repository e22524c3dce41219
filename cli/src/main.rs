//! The `localstream` binary: everything lives in [`localstream_cli::app`].

fn main() -> std::process::ExitCode {
    localstream_cli::app::main()
}
