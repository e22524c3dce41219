//! Validation of file names that arrive over the network, and escaping of
//! untrusted text before it reaches a terminal.
//!
//! A sender describes each file by a *wire path*: a relative path in UTF-8 whose
//! components are separated by `/`, e.g. `photos/2024/beach.jpg`. The receiver
//! must never let such a path escape its destination directory, nor produce a
//! name that a Windows receiver would interpret differently from a Unix one.
//! [`validate_wire_path`] accepts a path only when every component is an
//! ordinary file name on every platform we care about, and returns the
//! components so the receiver can create them one at a time (see
//! `localstream::fsutil`, which additionally refuses symlinked parents).
//!
//! ```text
//!  wire path "a/b/c.txt" --validate_wire_path--> ["a", "b", "c.txt"]
//!                                                  |
//!                              receiver: dest_root/a/b (no symlinks) + c.txt
//! ```
//!
//! Names are also shown to users ("alice wants to send `…`"). Anything shown
//! must go through [`escape_for_terminal`] so that a hostile name cannot move
//! the cursor, clear the screen or reorder text with bidi overrides.
//!
//! This module is pure: no I/O, only `std`.

use std::fmt::Write as _;

/// Longest accepted wire path, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted path component, in bytes (`NAME_MAX` on common filesystems).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Most components accepted in one wire path.
pub const MAX_DEPTH: usize = 64;

/// How many characters of an offending component an error message shows.
const SHOWN_CHARS: usize = 48;

/// Why a wire path was refused.
///
/// Components are stored raw; the `Display` impl escapes them with
/// [`escape_for_terminal`] (and shortens very long ones), so an error message
/// can be printed as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The path is the empty string.
    #[error("empty path")]
    Empty,
    /// The path is longer than [`MAX_PATH_BYTES`].
    #[error("path is {len} bytes long, the limit is {MAX_PATH_BYTES}")]
    PathTooLong {
        /// Length of the path in bytes.
        len: usize,
    },
    /// The path has more than [`MAX_DEPTH`] components.
    #[error("path has {depth} components, the limit is {MAX_DEPTH}")]
    TooDeep {
        /// Number of components.
        depth: usize,
    },
    /// The path starts with `/`.
    #[error("absolute path (starts with '/')")]
    Absolute,
    /// The path has an empty component: a trailing `/` or `//` inside.
    #[error("empty path component at position {index} (trailing '/' or '//')")]
    EmptyComponent {
        /// Zero-based index of the empty component.
        index: usize,
    },
    /// A component is `.` or `..`.
    #[error("path component {} is not allowed", show(.component))]
    DotComponent {
        /// `"."` or `".."`.
        component: String,
    },
    /// A component contains NUL or another ASCII control character
    /// (0x00-0x1F, 0x7F).
    #[error("path component {} contains control character {byte:#04x}", show(.component))]
    ControlChar {
        /// The offending component.
        component: String,
        /// The control character.
        byte: u8,
    },
    /// A component contains a C1 control character (U+0080..U+009F), a
    /// bidirectional override/isolate (U+202A..U+202E, U+2066..U+2069), which
    /// only serve to make a name look like something it is not, or a Unicode
    /// line/paragraph separator (U+2028, U+2029), a line break for many tools
    /// (Python's `splitlines`, editors, some terminals) just as `\n` is.
    #[error("path component {} contains character U+{:04X}", show(.component), u32::from(*.ch))]
    UnsafeChar {
        /// The offending component.
        component: String,
        /// The character.
        ch: char,
    },
    /// A component contains a backslash (a path separator on Windows).
    #[error("path component {} contains a backslash", show(.component))]
    Backslash {
        /// The offending component.
        component: String,
    },
    /// The first component looks like a Windows drive (`C:`, `c:foo`).
    #[error("path starts with a drive letter: {}", show(.component))]
    DriveLetter {
        /// The offending component.
        component: String,
    },
    /// A component contains `:` (drive letters, NTFS alternate data streams).
    #[error("path component {} contains ':'", show(.component))]
    Colon {
        /// The offending component.
        component: String,
    },
    /// A component is longer than [`MAX_COMPONENT_BYTES`].
    #[error("path component {} is {len} bytes long, the limit is {MAX_COMPONENT_BYTES}", show(.component))]
    ComponentTooLong {
        /// The offending component.
        component: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A component is a Windows reserved device name (`CON`, `nul.txt`, `COM1`, ...).
    #[error("path component {} is a reserved device name on Windows", show(.component))]
    ReservedName {
        /// The offending component.
        component: String,
    },
    /// A component ends in `.` or a space, which Windows silently strips.
    #[error("path component {} ends with '.' or a space", show(.component))]
    TrailingDotOrSpace {
        /// The offending component.
        component: String,
    },
}

/// Escaped, shortened form of a component for error messages.
fn show(component: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = component.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    out.push_str(&escape_for_terminal(&head));
    if chars.next().is_some() {
        out.push('…');
    }
    out.push('"');
    out
}

/// Checks a relative path received from the network and splits it into its
/// components.
///
/// Accepts only paths that are safe to join under a destination directory on
/// Unix and Windows alike; see [`NameError`] for every reason a path is
/// refused. The returned components borrow from `path`, are never empty, `.`
/// or `..`, and joined with `/` give back `path` exactly.
///
/// # Errors
/// A [`NameError`] describing the first problem found.
pub fn validate_wire_path(path: &str) -> Result<Vec<&str>, NameError> {
    check_wire_path(path)?;
    Ok(path.split('/').collect())
}

/// [`validate_wire_path`] without the list of components: `Ok` when every
/// component passes (then `path.split('/')` gives them, and
/// `path.rsplit_once('/')` the folders and the file name).
///
/// # Errors
/// A [`NameError`] describing the first problem found.
pub fn check_wire_path(path: &str) -> Result<(), NameError> {
    if path.is_empty() {
        return Err(NameError::Empty);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(NameError::PathTooLong { len: path.len() });
    }
    if path.starts_with('/') {
        return Err(NameError::Absolute);
    }
    let depth = path.bytes().filter(|&b| b == b'/').count() + 1;
    if depth > MAX_DEPTH {
        return Err(NameError::TooDeep { depth });
    }
    for (index, component) in path.split('/').enumerate() {
        validate_component(component, index)?;
    }
    Ok(())
}

/// [`check_wire_path`] of `parent/leaf`, for a `parent` that passed it
/// already: only the new component and the whole path's length and depth
/// are looked at (a walk names each entry of a folder this way).
///
/// # Errors
/// A [`NameError`] describing the first problem found, as
/// [`check_wire_path`] would find it.
pub fn check_wire_child(parent: &str, leaf: &str) -> Result<(), NameError> {
    let len = parent.len() + 1 + leaf.len();
    if len > MAX_PATH_BYTES {
        return Err(NameError::PathTooLong { len });
    }
    let depth = parent.bytes().filter(|&b| b == b'/').count() + 2;
    if depth > MAX_DEPTH {
        return Err(NameError::TooDeep { depth });
    }
    if leaf.contains('/') {
        // More than one component: all of them.
        return check_wire_path(&format!("{parent}/{leaf}"));
    }
    validate_component(leaf, depth - 1)
}

/// Checks one component; `index` is its position in the path.
fn validate_component(component: &str, index: usize) -> Result<(), NameError> {
    let owned = || component.to_owned();
    if component.is_empty() {
        return Err(NameError::EmptyComponent { index });
    }
    if component == "." || component == ".." {
        return Err(NameError::DotComponent { component: owned() });
    }
    if component.len() > MAX_COMPONENT_BYTES {
        return Err(NameError::ComponentTooLong {
            component: owned(),
            len: component.len(),
        });
    }
    if let Some(byte) = component.bytes().find(|b| b.is_ascii_control()) {
        return Err(NameError::ControlChar {
            component: owned(),
            byte,
        });
    }
    if let Some(ch) = component.chars().find(|c| {
        matches!(c,
            '\u{80}'..='\u{9f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
        )
    }) {
        return Err(NameError::UnsafeChar {
            component: owned(),
            ch,
        });
    }
    if component.contains('\\') {
        return Err(NameError::Backslash { component: owned() });
    }
    if index == 0 && looks_like_drive(component) {
        return Err(NameError::DriveLetter { component: owned() });
    }
    if component.contains(':') {
        return Err(NameError::Colon { component: owned() });
    }
    if is_windows_reserved(component) {
        return Err(NameError::ReservedName { component: owned() });
    }
    if component.ends_with('.') || component.ends_with(' ') {
        return Err(NameError::TrailingDotOrSpace { component: owned() });
    }
    Ok(())
}

/// `C:`, `c:foo`: an ASCII letter followed by a colon.
fn looks_like_drive(component: &str) -> bool {
    let b = component.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Windows reserved device names, case-insensitive, with or without an
/// extension (`con`, `NUL.txt`, `com1.tar.gz`, `CON .txt`).
fn is_windows_reserved(component: &str) -> bool {
    // Windows looks at the part before the first dot, ignoring trailing spaces.
    let stem = component
        .split('.')
        .next()
        .unwrap_or(component)
        .trim_end_matches(' ');
    const PLAIN: [&str; 6] = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];
    if PLAIN.iter().any(|r| stem.eq_ignore_ascii_case(r)) {
        return true;
    }
    // COM0-9, LPT0-9 and the superscript digits Windows also treats as ports.
    for prefix in ["COM", "LPT"] {
        if let (Some(head), Some(rest)) = (stem.get(..3), stem.get(3..))
            && head.eq_ignore_ascii_case(prefix)
        {
            let mut chars = rest.chars();
            if let (Some(c), None) = (chars.next(), chars.next())
                && (c.is_ascii_digit() || matches!(c, '¹' | '²' | '³'))
            {
                return true;
            }
        }
    }
    false
}

/// Whether `c` is a control, bidi-formatting or line-separator character:
/// one that can move the cursor, recolour or reorder what a terminal shows.
/// Display names with such characters are refused; wire paths refuse all of
/// them except the bidi marks (see [`validate_wire_path`]), which are escaped
/// wherever a name is shown.
#[must_use]
pub fn is_control_or_bidi(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'          // C0 controls (ESC, BEL, CR, LF, ...)
        | '\u{7f}'                  // DEL
        | '\u{80}'..='\u{9f}'       // C1 controls (CSI = U+009B, ...)
        | '\u{202a}'..='\u{202e}'   // bidi embeddings and overrides
        | '\u{2066}'..='\u{2069}'   // bidi isolates
        | '\u{200e}' | '\u{200f}' | '\u{061c}' // bidi marks (LRM, RLM, ALM)
        | '\u{2028}' | '\u{2029}'   // line / paragraph separators
    )
}

/// `text` without control or bidi characters (see [`is_control_or_bidi`]),
/// cut to at most `max` bytes on a character boundary.
#[must_use]
pub fn strip_control_or_bidi(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().filter(|&c| !is_control_or_bidi(c)) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Whether `c` is an invisible formatting character: zero-width space,
/// joiners and word joiner, invisible operators, soft hyphen, byte-order
/// mark, deprecated format controls, interlinear annotations, tag
/// characters, and the blank fillers (Hangul fillers, braille blank) that
/// render as nothing. Variation selectors are not among them: emoji need
/// U+FE0F and they cannot hide a character. Allowed in names (Persian text needs ZWNJ, emoji need ZWJ),
/// but escaped on display: they can hide or fake what a name says.
#[must_use]
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{ad}'                      // soft hyphen
        | '\u{34f}'                   // combining grapheme joiner
        | '\u{115f}' | '\u{1160}'       // Hangul choseong / jungseong fillers
        | '\u{180e}'                  // Mongolian vowel separator
        | '\u{200b}'..='\u{200d}'     // zero-width space, ZWNJ, ZWJ
        | '\u{2060}'..='\u{2064}'     // word joiner, invisible operators
        | '\u{206a}'..='\u{206f}'     // deprecated format controls
        | '\u{2800}'                  // braille pattern blank
        | '\u{3164}'                  // Hangul filler
        | '\u{feff}'                  // byte-order mark / ZWNBSP
        | '\u{ffa0}'                  // halfwidth Hangul filler
        | '\u{fff9}'..='\u{fffb}'     // interlinear annotation
        | '\u{e0000}'..='\u{e007f}'   // tags
    )
}

/// Whether `c` must never reach a terminal raw.
fn needs_escape(c: char) -> bool {
    // The backslash too, so that escapes stay unambiguous.
    is_control_or_bidi(c) || is_invisible_format(c) || c == '\\'
}

/// Makes untrusted text safe to print on a terminal.
///
/// ASCII control characters and DEL become `\xNN`; C1 controls (U+0080 to
/// U+009F), bidi embedding/override/isolate characters (U+202A to U+202E,
/// U+2066 to U+2069), bidi marks (U+200E, U+200F, U+061C), the Unicode
/// line/paragraph separators and invisible formatting characters
/// ([`is_invisible_format`]: U+200B, U+2060, U+FEFF, ...) become `\u{NNNN}`. A backslash becomes `\\` so
/// the output is unambiguous. Everything else, including ordinary Unicode such
/// as `résumé 日本.txt`, is unchanged.
#[must_use]
pub fn escape_for_terminal(s: &str) -> String {
    escaped_for_terminal(s).into_owned()
}

/// [`escape_for_terminal`], borrowing `s` when nothing in it needs escaping
/// (no allocation for the usual name).
#[must_use]
pub fn escaped_for_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_ascii() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn err(path: &str) -> NameError {
        match validate_wire_path(path) {
            Ok(c) => panic!("{path:?} was accepted as {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_child_is_checked_as_its_whole_path_would_be() {
        let deep = vec!["d"; MAX_DEPTH - 1].join("/");
        let long = vec!["x".repeat(200); 20].join("/");
        let parents = ["top", "top/sub", deep.as_str(), long.as_str()];
        let (z76, z77) = ("z".repeat(76), "z".repeat(77));
        let leaves = [
            "a.txt",
            "",
            ".",
            "..",
            "con",
            "CON .txt",
            "c:x",
            "a:b",
            "bad.",
            "bad ",
            "tab\tx",
            "back\\slash",
            "bidi\u{202e}txt",
            "x/y",
            "x//y",
            "ok/..",
            "y",
            "yyyy",
            "\u{85}nel",
            &z76,
            &z77,
        ];
        for parent in parents {
            check_wire_path(parent).unwrap();
            for leaf in leaves {
                let whole = format!("{parent}/{leaf}");
                assert_eq!(
                    check_wire_child(parent, leaf),
                    check_wire_path(&whole),
                    "{parent:?} / {leaf:?}"
                );
            }
        }
        assert_eq!(
            check_wire_child(&long, &"z".repeat(77)),
            Err(NameError::PathTooLong {
                len: MAX_PATH_BYTES + 1
            })
        );
    }

    #[test]
    fn invisible_format_characters_are_escaped_for_display() {
        assert_eq!(escape_for_terminal("lap\u{200b}top"), "lap\\u{200b}top");
        assert_eq!(
            escape_for_terminal("\u{feff}x\u{2060}"),
            "\\u{feff}x\\u{2060}"
        );
        assert_eq!(escape_for_terminal("a\u{e0041}"), "a\\u{e0041}");
        // Allowed in file names, still escaped when shown.
        assert!(validate_wire_path("نامه\u{200c}ها.txt").is_ok());
        assert_eq!(escape_for_terminal("résumé 日本.txt"), "résumé 日本.txt");
    }

    #[test]
    fn good_paths() {
        assert_eq!(validate_wire_path("a.txt").unwrap(), ["a.txt"]);
        assert_eq!(
            validate_wire_path("a/b/c.txt").unwrap(),
            ["a", "b", "c.txt"]
        );
        assert_eq!(validate_wire_path(".bashrc").unwrap(), [".bashrc"]);
        assert_eq!(validate_wire_path("..hidden").unwrap(), ["..hidden"]);
        assert_eq!(validate_wire_path("a..b").unwrap(), ["a..b"]);
        assert_eq!(
            validate_wire_path("my docs/résumé 日本.txt").unwrap(),
            ["my docs", "résumé 日本.txt"]
        );
        assert_eq!(
            validate_wire_path(" leading space").unwrap(),
            [" leading space"]
        );
        assert_eq!(validate_wire_path("console.log").unwrap(), ["console.log"]);
        assert_eq!(validate_wire_path("COM10").unwrap(), ["COM10"]);
        assert_eq!(validate_wire_path("LPT").unwrap(), ["LPT"]);
        assert_eq!(validate_wire_path("auxiliary").unwrap(), ["auxiliary"]);
        assert_eq!(
            validate_wire_path("emoji 🎉.png").unwrap(),
            ["emoji 🎉.png"]
        );
        // Exactly at the limits.
        let c255 = "x".repeat(MAX_COMPONENT_BYTES);
        assert_eq!(validate_wire_path(&c255).unwrap(), [c255.as_str()]);
        let deep = vec!["d"; MAX_DEPTH].join("/");
        assert_eq!(validate_wire_path(&deep).unwrap().len(), MAX_DEPTH);
        let long = vec!["y".repeat(200); 20].join("/");
        assert!(long.len() <= MAX_PATH_BYTES);
        assert_eq!(validate_wire_path(&long).unwrap().len(), 20);
    }

    #[test]
    fn traversal_and_absolute() {
        assert_eq!(err(""), NameError::Empty);
        assert!(
            matches!(err("../etc/passwd"), NameError::DotComponent { component } if component == "..")
        );
        assert!(matches!(err("a/../b"), NameError::DotComponent { .. }));
        assert!(matches!(err(".."), NameError::DotComponent { .. }));
        assert!(matches!(err("."), NameError::DotComponent { .. }));
        assert!(matches!(err("a/./b"), NameError::DotComponent { .. }));
        assert!(matches!(err("a/.."), NameError::DotComponent { .. }));
        assert_eq!(err("/abs"), NameError::Absolute);
        assert_eq!(err("/etc/passwd"), NameError::Absolute);
        assert_eq!(err("/"), NameError::Absolute);
        assert_eq!(err("a/"), NameError::EmptyComponent { index: 1 });
        assert_eq!(err("a//b"), NameError::EmptyComponent { index: 1 });
    }

    #[test]
    fn windows_hazards() {
        assert!(matches!(err("C:x"), NameError::DriveLetter { .. }));
        assert!(matches!(err("C:"), NameError::DriveLetter { .. }));
        assert!(matches!(err("c:foo/bar"), NameError::DriveLetter { .. }));
        assert!(matches!(err("a/C:x"), NameError::Colon { .. }));
        assert!(matches!(err("file.txt:stream"), NameError::Colon { .. }));
        assert!(matches!(err("a\\b"), NameError::Backslash { .. }));
        assert!(matches!(
            err("..\\..\\windows"),
            NameError::Backslash { .. }
        ));
        for name in [
            "con",
            "CON",
            "Con.txt",
            "prn",
            "aux.c",
            "nul",
            "NUL.tar.gz",
            "COM1",
            "com1.txt",
            "COM1.txt",
            "LPT9",
            "lpt1.log",
            "com0",
            "CON .txt",
            "conin$",
            "COM¹",
            "dir/aux",
        ] {
            assert!(
                matches!(err(name), NameError::ReservedName { .. }),
                "{name:?} should be reserved"
            );
        }
        for name in ["trailing.", "trailing ", "dir./x", "a/b "] {
            assert!(
                matches!(err(name), NameError::TrailingDotOrSpace { .. }),
                "{name:?}"
            );
        }
    }

    #[test]
    fn c1_controls_bidi_overrides_and_line_separators_are_refused() {
        for (bad, ch) in [
            ("a\u{9b}31m", '\u{9b}'),
            ("invoice\u{202e}fdp.exe", '\u{202e}'),
            ("x\u{2066}y", '\u{2066}'),
            ("report.pdf\u{2028}invoice.exe", '\u{2028}'),
            ("dir/a\u{2029}b", '\u{2029}'),
        ] {
            match validate_wire_path(bad) {
                Err(NameError::UnsafeChar { ch: found, .. }) => assert_eq!(found, ch, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // Right-to-left text itself is fine, and so are the bidi marks that
        // mixed-direction names need (they are escaped when displayed).
        assert!(validate_wire_path("שלום.txt").is_ok());
        for mark in ["a\u{200e}b", "שלום\u{200f}.txt", "x\u{61c}y"] {
            assert!(validate_wire_path(mark).is_ok(), "{mark:?}");
            assert!(!escape_for_terminal(mark).contains(['\u{200e}', '\u{200f}', '\u{61c}']));
        }
    }

    #[test]
    fn control_characters() {
        assert_eq!(
            err("x\0y"),
            NameError::ControlChar {
                component: "x\0y".into(),
                byte: 0
            }
        );
        assert!(matches!(
            err("\x1b[2J"),
            NameError::ControlChar { byte: 0x1b, .. }
        ));
        assert!(matches!(
            err("a/b\nc"),
            NameError::ControlChar { byte: b'\n', .. }
        ));
        assert!(matches!(
            err("tab\there"),
            NameError::ControlChar { byte: b'\t', .. }
        ));
        assert!(matches!(
            err("del\x7f"),
            NameError::ControlChar { byte: 0x7f, .. }
        ));
    }

    #[test]
    fn lengths() {
        let c256 = "x".repeat(MAX_COMPONENT_BYTES + 1);
        assert!(matches!(
            err(&c256),
            NameError::ComponentTooLong { len: 256, .. }
        ));
        // Multi-byte characters count in bytes: 86 * 3 = 258.
        let wide = "日".repeat(86);
        assert!(matches!(
            err(&format!("ok/{wide}")),
            NameError::ComponentTooLong { len: 258, .. }
        ));
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        assert_eq!(
            err(&deep),
            NameError::TooDeep {
                depth: MAX_DEPTH + 1
            }
        );
        let long = "z".repeat(MAX_PATH_BYTES + 1);
        assert_eq!(
            err(&long),
            NameError::PathTooLong {
                len: MAX_PATH_BYTES + 1
            }
        );
    }

    #[test]
    fn error_messages_are_escaped() {
        let msg = err("\x1b[2J").to_string();
        assert!(!msg.contains('\x1b'), "{msg}");
        assert!(msg.contains("\\x1b[2J"), "{msg}");
        let msg = err(&"q".repeat(300)).to_string();
        assert!(msg.len() < 150, "{msg}");
        assert!(msg.contains('…'));
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_for_terminal("résumé 日本.txt"), "résumé 日本.txt");
        assert_eq!(escape_for_terminal("plain"), "plain");
        assert_eq!(escape_for_terminal("\x1b[2J"), "\\x1b[2J");
        assert_eq!(escape_for_terminal("a\nb\r\0"), "a\\x0ab\\x0d\\x00");
        assert_eq!(escape_for_terminal("\x7f"), "\\x7f");
        assert_eq!(escape_for_terminal("\u{9b}31m"), "\\u{009b}31m");
        assert_eq!(escape_for_terminal("\u{85}"), "\\u{0085}");
        assert_eq!(
            escape_for_terminal("evil\u{202e}txt.exe"),
            "evil\\u{202e}txt.exe"
        );
        assert_eq!(
            escape_for_terminal("\u{2066}x\u{2069}"),
            "\\u{2066}x\\u{2069}"
        );
        assert_eq!(escape_for_terminal("a\\x1b"), "a\\\\x1b");
        // Just outside the escaped ranges (U+206A..U+206F are format
        // controls, escaped as invisible).
        assert_eq!(
            escape_for_terminal("\u{a0}\u{202f}\u{2065}\u{2070}"),
            "\u{a0}\u{202f}\u{2065}\u{2070}"
        );
    }

    /// Deterministic xorshift64 generator for the property tests.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn never_panics_on_random_input() {
        // Bytes that exercise the interesting paths, mixed with arbitrary ones.
        const ALPHABET: &[u8] =
            b"/./..\\:aAcCoOnNmM1 \0\x1b\x7f\xc2\x9b\xe2\x80\xae\xa8\xe2\x80\x8f\xff";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for i in 0..5000u32 {
            let len = if i.is_multiple_of(50) {
                (rng.next() % 5000) as usize
            } else {
                (rng.next() % 40) as usize
            };
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if r.is_multiple_of(3) {
                        (r >> 8) as u8
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect();
            let s = String::from_utf8_lossy(&bytes);
            if let Ok(components) = validate_wire_path(&s) {
                accepted += 1;
                assert_eq!(components.join("/"), s);
                assert!(components.len() <= MAX_DEPTH);
                for c in &components {
                    assert!(!c.is_empty() && *c != "." && *c != "..");
                    assert!(!c.contains(['/', '\\', ':', '\0']));
                    assert!(!c.bytes().any(|b| b.is_ascii_control()));
                    assert!(!c.chars().any(|ch| {
                        is_control_or_bidi(ch) && !matches!(ch, '\u{200e}' | '\u{200f}' | '\u{61c}')
                    }));
                    assert!(c.len() <= MAX_COMPONENT_BYTES);
                }
            }
            let escaped = escape_for_terminal(&s);
            assert!(!escaped.chars().any(|c| c.is_control()));
            assert!(
                !escaped
                    .chars()
                    .any(|c| ('\u{202a}'..='\u{202e}').contains(&c))
            );
        }
        // The generator must reach the accepting branch too.
        assert!(accepted > 50, "only {accepted} accepted");
    }
}
