//! `localstream config path|show|set`: the settings file, as text.

use std::path::Path;

use localstream_node::Result;
use localstream_node::settings;

use crate::cli::ConfigCommand;
use crate::outln;

/// Runs `localstream config ...`.
pub fn run(home: &Path, cmd: &ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Path => outln!("{}", settings::path(home).display()),
        ConfigCommand::Show => outln!("{}", settings::show(home, &settings::load(home)?)),
        ConfigCommand::Set { key, value } => {
            let file = settings::set(home, key, value)?;
            eprintln!("{key} set in {}", file.display());
        }
    }
    Ok(())
}
