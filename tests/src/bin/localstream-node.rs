//! The `localstream` command, built inside the scenarios crate so that its
//! tests can run it (`CARGO_BIN_EXE_localstream-node`) in network namespaces.
//!
//! Safety net: it runs only inside a network namespace named by `ip netns`
//! (the test LAN's hosts), never on this machine's own interfaces, where its
//! mDNS traffic would reach the real network.

use std::process::ExitCode;

fn main() -> ExitCode {
    if localstream_scenarios::current_netns().is_none() {
        eprintln!(
            "localstream-node: refusing to run outside a test network namespace \
             (run it with `ip netns exec`; for anything else use `localstream`)"
        );
        return ExitCode::from(2);
    }
    localstream_cli::app::main()
}
