//! `localstream manpage`: the manual, generated from the command-line
//! definition (so it never goes stale), as one complete page on stdout or
//! as one page per command in a folder.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};

use crate::cli::Cli;

/// The command tree as the pages show it: built (so every command knows its
/// full name), without the `help` pseudo-command.
fn tree() -> Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The commands under `cmd` that `--help` lists, in its order.
fn visible(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands().filter(|c| !c.is_hide_set())
}

/// One complete page: name, synopsis, description and global options, then a
/// section per command (nested ones such as `config set` included) with its
/// synopsis, description and every option it takes.
///
/// # Errors
/// When `out` cannot be written.
pub fn page(out: &mut dyn Write) -> io::Result<()> {
    let cmd = tree();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    writeln!(
        out,
        "Each command also takes the options above (\\fB--home\\fR, \\fB-v\\fR, \\fB--no-progress\\fR)."
    )?;
    for sub in visible(&cmd) {
        command(out, sub)?;
    }
    man.render_version_section(out)
}

/// One command's part of [`page`]: clap_mangen's sections for it, turned
/// into a sub-section (roff is line-based, so headings are whole lines).
fn command(out: &mut dyn Write, cmd: &Command) -> io::Result<()> {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    // The global options are documented once, at the top.
    let mut own = cmd.clone();
    let globals: Vec<_> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set() || a.get_id() == "help")
        .map(|a| a.get_id().clone())
        .collect();
    for id in globals {
        own = own.mut_arg(id, |a| a.hide(true));
    }
    let man = clap_mangen::Man::new(own);
    let mut text = Vec::new();
    man.render_synopsis_section(&mut text)?;
    man.render_description_section(&mut text)?;
    if cmd
        .get_arguments()
        .any(|a| !a.is_hide_set() && !a.is_global_set())
    {
        man.render_options_section(&mut text)?;
    }
    writeln!(out, ".SS \"{}\"", name.replace('"', ""))?;
    for line in String::from_utf8_lossy(&text).lines() {
        match line {
            ".SH SYNOPSIS" => {}
            ".SH DESCRIPTION" => writeln!(out, ".PP")?,
            ".SH OPTIONS" => writeln!(out, ".PP\nOptions:")?,
            _ => writeln!(out, "{line}")?,
        }
    }
    for sub in visible(cmd) {
        command(out, sub)?;
    }
    Ok(())
}

/// Writes `localstream.1` and a page per command (`localstream-send.1`,
/// `localstream-config-set.1`, ...) into `dir`, which is created; returns
/// the files written.
///
/// # Errors
/// When `dir` cannot be created or written.
pub fn pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fn walk(cmd: &Command, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
        written.push(clap_mangen::Man::new(cmd.clone()).generate_to(dir)?);
        for sub in visible(cmd) {
            walk(sub, dir, written)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    walk(&tree(), dir, &mut written)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command with every option it offers: (full name, long flags).
    fn expected() -> Vec<(String, Vec<String>)> {
        fn walk(cmd: &Command, all: &mut Vec<(String, Vec<String>)>) {
            for sub in visible(cmd) {
                let longs = sub
                    .get_arguments()
                    .filter(|a| !a.is_hide_set() && !a.is_global_set())
                    .filter_map(|a| a.get_long())
                    .filter(|l| *l != "help")
                    .map(|l| format!("\\-\\-{}", l.replace('-', "\\-")))
                    .collect();
                let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
                all.push((name.to_owned(), longs));
                walk(sub, all);
            }
        }
        let mut all = Vec::new();
        walk(&tree(), &mut all);
        all
    }

    #[test]
    fn one_page_documents_every_command_and_option() {
        let mut out = Vec::new();
        page(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        // No reference to pages that this page does not come with.
        assert!(!page.contains("localstream-send(1)"), "{page}");
        assert!(page.contains(".SS \"localstream send\""));
        assert!(page.contains(".SS \"localstream config set\""));
        assert!(page.contains("\\-\\-home"));
        let all = expected();
        assert!(all.len() > 15, "{all:?}");
        for (name, longs) in all {
            let start = page
                .find(&format!(".SS \"{name}\""))
                .unwrap_or_else(|| panic!("no section for {name}"));
            let rest = &page[start + 5..];
            let section = &rest[..rest.find(".SS ").unwrap_or(rest.len())];
            for long in longs {
                assert!(section.contains(&long), "{name}: no {long} in {section}");
            }
        }
    }

    #[test]
    fn a_page_per_command() {
        let dir = tempfile::tempdir().unwrap();
        let written = pages(&dir.path().join("man1")).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for name in [
            "localstream.1",
            "localstream-send.1",
            "localstream-listen.1",
            "localstream-config-set.1",
            "localstream-service.1",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
        }
        let send = std::fs::read_to_string(dir.path().join("man1/localstream-send.1")).unwrap();
        assert!(send.contains("\\-\\-retry"), "{send}");
        // The top page names the others, which are now there.
        let top = std::fs::read_to_string(dir.path().join("man1/localstream.1")).unwrap();
        assert!(top.contains("localstream\\-send(1)") || top.contains("localstream-send(1)"));
    }
}
