//! `send --exclude`: which paths inside a folder are left out of the offer.
//!
//! Each pattern is one line of a `.gitignore`, matched as git matches it
//! (the `ignore` crate's gitignore matcher), against the path of each file and
//! folder relative to the folder being sent (`project/src/main.o` is
//! `src/main.o` when `project` is sent):
//!
//! - a pattern without a `/` (other than a trailing one) matches a name at
//!   any depth: `*.o`, `.git`, `node_modules`;
//! - a trailing `/` matches folders only: `target/`;
//! - a pattern with a `/` elsewhere is anchored at the folder sent:
//!   `/build`, `docs/*.md`; `**` spans folders: `**/cache/*.tmp`;
//! - a later `!pattern` takes a path matched by an earlier one back in,
//!   except under a folder that is left out (its contents are never listed).
//!
//! A folder that matches is left out with everything in it. Paths named on
//! the command line are sent as named: patterns apply inside folders only.

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};

/// The `--exclude` patterns, compiled.
#[derive(Debug, Clone)]
pub struct Exclude {
    matcher: Gitignore,
}

impl Default for Exclude {
    fn default() -> Self {
        Exclude {
            matcher: Gitignore::empty(),
        }
    }
}

impl Exclude {
    /// Compiles `patterns` (each as one `.gitignore` line).
    ///
    /// # Errors
    /// [`Error::Usage`] for a pattern that is empty, a comment (`#...`;
    /// write `\#` for a name that starts with `#`), or not a valid glob.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Exclude> {
        // Root `.`: paths are given relative to the folder sent, as they are.
        let mut builder = GitignoreBuilder::new(".");
        for p in patterns {
            let p = p.as_ref();
            if p.trim().is_empty() {
                return Err(Error::Usage("--exclude: the pattern is empty".into()));
            }
            if p.starts_with('#') {
                return Err(Error::Usage(format!(
                    "--exclude {p}: a pattern starting with # is a comment in gitignore \
                     syntax and matches nothing (write \\# for a name that starts with #)"
                )));
            }
            builder
                .add_line(None, p)
                .map_err(|e| Error::Usage(format!("--exclude {p}: not a usable pattern ({e})")))?;
        }
        let matcher = builder
            .build()
            .map_err(|e| Error::Usage(format!("--exclude: {e}")))?;
        Ok(Exclude { matcher })
    }

    /// Whether there are no patterns.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.matcher.is_empty()
    }

    /// Whether the path `relative` (to the folder being sent) is left out;
    /// `dir` says whether it is a folder. The caller does not descend into
    /// a folder that is left out.
    #[must_use]
    pub fn excludes(&self, relative: &Path, dir: bool) -> bool {
        !self.is_empty() && self.matcher.matched(relative, dir).is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Exclude {
        Exclude::new(patterns).unwrap()
    }

    #[test]
    fn a_name_pattern_matches_at_any_depth() {
        let e = ex(&["*.o", ".git"]);
        assert!(e.excludes(Path::new("main.o"), false));
        assert!(e.excludes(Path::new("src/deep/main.o"), false));
        assert!(e.excludes(Path::new(".git"), true));
        assert!(e.excludes(Path::new("vendor/lib/.git"), true));
        assert!(e.excludes(Path::new(".git"), false));
        assert!(!e.excludes(Path::new("main.c"), false));
        assert!(!e.excludes(Path::new("main.o.txt"), false));
        assert!(!e.excludes(Path::new(".github"), true));
        assert!(!e.excludes(Path::new("src/o"), false));
    }

    #[test]
    fn a_trailing_slash_matches_folders_only() {
        let e = ex(&["target/"]);
        assert!(e.excludes(Path::new("target"), true));
        assert!(e.excludes(Path::new("crates/x/target"), true));
        assert!(!e.excludes(Path::new("target"), false));
        assert!(!e.excludes(Path::new("targets"), true));
    }

    #[test]
    fn a_slash_inside_anchors_at_the_folder_sent() {
        let e = ex(&["/build", "docs/*.md"]);
        assert!(e.excludes(Path::new("build"), true));
        assert!(e.excludes(Path::new("build"), false));
        assert!(!e.excludes(Path::new("src/build"), true));
        assert!(e.excludes(Path::new("docs/a.md"), false));
        assert!(!e.excludes(Path::new("docs/sub/a.md"), false));
        assert!(!e.excludes(Path::new("x/docs/a.md"), false));
        let deep = ex(&["**/cache/*.tmp"]);
        assert!(deep.excludes(Path::new("cache/a.tmp"), false));
        assert!(deep.excludes(Path::new("a/b/cache/c.tmp"), false));
        assert!(!deep.excludes(Path::new("a/b/cache/c.txt"), false));
    }

    #[test]
    fn a_negation_takes_a_path_back() {
        let e = ex(&["*.log", "!keep.log"]);
        assert!(e.excludes(Path::new("a.log"), false));
        assert!(!e.excludes(Path::new("keep.log"), false));
        assert!(!e.excludes(Path::new("sub/keep.log"), false));
    }

    #[test]
    fn no_patterns_exclude_nothing() {
        let e = Exclude::default();
        assert!(e.is_empty());
        assert!(!e.excludes(Path::new("anything"), false));
        assert!(!ex(&[]).excludes(Path::new(".git"), true));
    }

    #[test]
    fn empty_comment_and_broken_patterns_are_usage_errors() {
        for (p, says) in [
            ("", "--exclude: the pattern is empty"),
            ("  ", "--exclude: the pattern is empty"),
            ("#x", "--exclude #x: a pattern starting with # is a comment"),
            ("x{a,b", "--exclude x{a,b: not a usable pattern"),
        ] {
            match Exclude::new(&[p]) {
                Err(Error::Usage(m)) => assert!(m.starts_with(says), "{p:?}: {m}"),
                other => panic!("{p:?}: {other:?}"),
            }
        }
        assert!(ex(&["\\#x"]).excludes(Path::new("#x"), false));
    }
}
