//! Embeds the web UI's files (`src/ui/assets/`) in the binary: a table of
//! `(name, bytes)` for every file there, rebuilt when any of them changes.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui/assets");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("cli/src/ui/assets is readable")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut table = String::from(
        "/// Every file of the UI, by name.\npub(crate) static FILES: &[(&str, &[u8])] = &[\n",
    );
    for name in &names {
        let path = dir.join(name);
        writeln!(
            table,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("writing to a string");
    }
    table.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR is set")).join("assets.rs");
    std::fs::write(out, table).expect("OUT_DIR is writable");
}
