//! `localstream config path|show|set`: the settings file, as text.

use std::path::Path;

use localstream_node::settings;
use localstream_node::{Error, Result};

use crate::cli::ConfigCommand;
use crate::outln;

/// Runs `localstream config ...`.
pub fn run(home: &Path, cmd: &ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Path => outln!("{}", settings::path(home).display()),
        ConfigCommand::Show => outln!("{}", settings::show(home, &settings::load(home)?)),
        ConfigCommand::Set { key, value } if key == "ui-password" => {
            let password = if value == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            } else {
                value.clone()
            };
            let hash = crate::ui::password::hash(&password).map_err(Error::Usage)?;
            let file = settings::set(home, key, &hash)?;
            eprintln!(
                "the web UI's password is set (as an argon2 hash) in {}",
                file.display()
            );
        }
        ConfigCommand::Set { key, value } => {
            let file = settings::set(home, key, value)?;
            eprintln!("{key} set in {}", file.display());
        }
    }
    Ok(())
}
