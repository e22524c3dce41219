//! The `localstream` binary: everything lives in [`localstream::app`].

fn main() -> std::process::ExitCode {
    localstream::app::main()
}
