//! The wire-path validator and the terminal escaper.

use super::*;

/// Pieces that each break (or nearly break) one rule of the validator.
const HAZARDS: &[&str] = &[
    "",
    ".",
    "..",
    "...",
    "..x",
    "a\\b",
    "a:b",
    "C:",
    "c:x",
    "con",
    "CON.txt",
    "Nul.tar.gz",
    "CON .txt",
    "conin$",
    "Lpt1",
    "COM\u{b9}",
    "com10",
    "trail.",
    "trail ",
    " lead",
    "x\0y",
    "x\x1by",
    "x\ny",
    "x\x7fy",
    "x\u{85}y",
    "x\u{9b}y",
    "x\u{202e}y",
    "x\u{2066}y",
    "x\u{2028}y",
    "x\u{2029}y",
    "x\u{200e}y",
    "x\u{61c}y",
    "x\u{a0}y",
    "x\u{feff}y",
    "日本",
    "🎉",
];

/// Mostly ordinary paths with a hazard here and there, sometimes any text,
/// and paths at the depth and length limits.
fn wire_path() -> impl Strategy<Value = String> {
    let component = prop_oneof![
        12 => ORDINARY.boxed(),
        2 => select(HAZARDS.to_vec()).prop_map(str::to_owned).boxed(),
        1 => (MAX_COMPONENT_BYTES - 1..=MAX_COMPONENT_BYTES + 1)
            .prop_map(|n| "l".repeat(n))
            .boxed(),
    ];
    prop_oneof![
        6 => (vec(component, 1..6), any::<bool>())
            .prop_map(|(c, lead)| if lead { format!("/{}", c.join("/")) } else { c.join("/") }),
        2 => (vec("[a-z]{1,6}", 1..6), vec(mutation(), 1..3)).prop_map(|(c, m)| {
            String::from_utf8_lossy(&mutate(c.join("/").into_bytes(), &m)).into_owned()
        }),
        1 => any::<String>(),
        1 => (MAX_DEPTH - 1..=MAX_DEPTH + 1).prop_map(|d| vec!["d"; d].join("/")),
        1 => (MAX_PATH_BYTES - 1..=MAX_PATH_BYTES + 1).prop_map(|n| {
            let components = vec!["c".repeat(99); n / 100];
            format!("{}/{}", components.join("/"), "e".repeat(n % 100 + 99))
        }),
    ]
}

/// Ordinary names: letters, digits, `_-. `, not ending in a dot or space.
const ORDINARY: &str = "[a-zA-Z0-9_-][a-zA-Z0-9_. -]{0,10}[a-zA-Z0-9_-]";

/// The Windows device names, as the validator documents them.
fn windows_reserved(component: &str) -> bool {
    let stem = component
        .split('.')
        .next()
        .unwrap_or(component)
        .trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    if ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"].contains(&upper.as_str()) {
        return true;
    }
    let chars: Vec<char> = upper.chars().collect();
    matches!(chars.as_slice(), ['C', 'O', 'M', d] | ['L', 'P', 'T', d]
        if d.is_ascii_digit() || matches!(d, '¹' | '²' | '³'))
}

/// Undoes [`escape_for_terminal`]: `\\`, `\xNN` and `\u{NNNN}`.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
            }
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

proptest! {
    #![proptest_config(config(20_000))]

    /// An accepted path is safe to join under a directory on Unix and
    /// Windows: no traversal, separators, drive letters, streams, device
    /// names, or characters that hide what the name is; a refusal prints
    /// safely.
    #[test]
    fn wire_paths(path in wire_path()) {
        let got = bounded("validate_wire_path", path.as_bytes(), || validate_wire_path(&path))?;
        match got {
            Ok(components) => {
                prop_assert_eq!(components.join("/"), path.as_str());
                prop_assert!(path.len() <= MAX_PATH_BYTES);
                prop_assert!(components.len() <= MAX_DEPTH);
                for c in &components {
                    prop_assert!(!c.is_empty() && *c != "." && *c != "..", "{:?}", c);
                    prop_assert!(c.len() <= MAX_COMPONENT_BYTES, "{:?}", c);
                    prop_assert!(!c.contains(['/', '\\', ':']), "{:?}", c);
                    prop_assert!(!c.ends_with(['.', ' ']), "{:?}", c);
                    prop_assert!(!windows_reserved(c), "{:?}", c);
                    // Of the characters a display escapes, only the bidi marks
                    // (needed by mixed-direction names) may be in a path.
                    let hidden = c.chars().find(|&ch| {
                        is_control_or_bidi(ch) && !matches!(ch, '\u{200e}' | '\u{200f}' | '\u{61c}')
                    });
                    prop_assert_eq!(hidden, None, "in {:?}", path);
                }
            }
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(
            !shown.chars().any(|c| is_control_or_bidi(c) || is_invisible_format(c)),
            "{:?}",
            shown
        );
            }
        }
    }

}

proptest! {
    #![proptest_config(config(500))]

    /// The validator is not so strict that ordinary names are refused.
    #[test]
    fn ordinary_paths_are_accepted(components in vec(ORDINARY, 1..=MAX_DEPTH)) {
        let path = components.join("/");
        let got = validate_wire_path(&path);
        if components.iter().any(|c| windows_reserved(c)) {
            prop_assert!(got.is_err(), "{:?}", path);
        } else {
            prop_assert_eq!(got, Ok(components.iter().map(String::as_str).collect()));
        }
    }

}

proptest! {
    #![proptest_config(config(20_000))]

    /// Escaped text has no control or bidi characters, is unambiguous (it
    /// unescapes to the original) and leaves ordinary text alone; stripped
    /// text is the longest clean prefix that fits.
    #[test]
    fn terminal_text(text in wire_path(), max in 0..64usize) {
        let shown = bounded("escape_for_terminal", text.as_bytes(), || escape_for_terminal(&text))?;
        prop_assert!(
            !shown.chars().any(|c| is_control_or_bidi(c) || is_invisible_format(c)),
            "{:?}",
            shown
        );
        let back = unescape(&shown);
        prop_assert_eq!(back.as_deref(), Some(text.as_str()), "escaping is unambiguous");
        if !text
            .chars()
            .any(|c| is_control_or_bidi(c) || is_invisible_format(c) || c == '\\')
        {
            prop_assert_eq!(&shown, &text);
        }
        let stripped = bounded("strip_control_or_bidi", text.as_bytes(), || {
            strip_control_or_bidi(&text, max)
        })?;
        prop_assert!(stripped.len() <= max);
        let clean: String = text.chars().filter(|&c| !is_control_or_bidi(c)).collect();
        prop_assert!(clean.starts_with(&stripped), "{:?} from {:?}", stripped, clean);
        if let Some(next) = clean[stripped.len()..].chars().next() {
            prop_assert!(stripped.len() + next.len_utf8() > max, "cut early: {:?}", stripped);
        }
    }
}
