//! The wire-path validator and the terminal escaper on arbitrary text: never
//! panics; an accepted path has only safe components; escaped text never
//! contains a control or bidi character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localstream_proto::names::{escape_for_terminal, is_control_or_bidi, validate_wire_path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(components) = validate_wire_path(text) {
        for c in components {
            assert!(!c.is_empty() && c != "." && c != "..", "{c:?}");
            assert!(!c.contains(['/', '\\', '\0', ':']), "{c:?}");
        }
    }
    let shown = escape_for_terminal(text);
    assert!(!shown.chars().any(is_control_or_bidi), "{shown:?}");
});
