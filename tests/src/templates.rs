//! Identity templates: RSA-3072 key generation is slow, so a few identities
//! are generated once per build directory and copied into each host's home.
//! Template `i` is used by host `h{i+1}`, so the hosts of one LAN always have
//! distinct keys and node ids.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use localstream_node::identity::{self, DEFAULT_KEY_BITS, KEY_FILE, NODE_FILE};

/// Serialises template creation within this process (other processes are
/// handled by creating in a temporary directory and renaming).
static LOCK: Mutex<()> = Mutex::new(());

/// Homes of templates `0..n` under `<tmp>/lan-identities`, created if needed
/// (the missing ones in parallel).
pub(crate) fn templates(tmp: &Path, n: usize) -> Vec<PathBuf> {
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tmp.join("lan-identities");
    std::fs::create_dir_all(&root).unwrap();
    let dirs: Vec<PathBuf> = (0..n).map(|i| root.join(format!("t{i}"))).collect();
    std::thread::scope(|s| {
        for (i, dir) in dirs.iter().enumerate() {
            if !usable(dir) {
                let root = &root;
                s.spawn(move || create(root, dir, i));
            }
        }
    });
    dirs
}

fn usable(dir: &Path) -> bool {
    dir.join(KEY_FILE).is_file()
        && dir.join(NODE_FILE).is_file()
        && identity::load_or_create(dir, DEFAULT_KEY_BITS, None).is_ok()
}

fn create(root: &Path, dir: &Path, i: usize) {
    let fresh = tempfile::tempdir_in(root).unwrap();
    let home = fresh.path().join("home");
    identity::load_or_create(&home, DEFAULT_KEY_BITS, Some(&format!("template{i}")))
        .unwrap_or_else(|e| panic!("cannot create identity template {i}: {e}"));
    if dir.exists() {
        // Left half-made or corrupt by an earlier run.
        let _ = std::fs::remove_dir_all(dir);
    }
    // Another test process may have won the race to create it.
    if std::fs::rename(&home, dir).is_err() {
        assert!(
            usable(dir),
            "cannot install identity template {}",
            dir.display()
        );
    }
}

/// Copies template `template` into `home` (which must not exist yet),
/// renaming the node to `name`.
pub(crate) fn install(template: &Path, home: &Path, name: &str) {
    std::fs::create_dir_all(home).unwrap();
    // fs::copy keeps the key file's 0600 mode.
    std::fs::copy(template.join(KEY_FILE), home.join(KEY_FILE)).unwrap();
    let raw = std::fs::read(template.join(NODE_FILE)).unwrap();
    let mut node: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    node["name"] = serde_json::Value::String(name.to_owned());
    std::fs::write(home.join(NODE_FILE), serde_json::to_vec(&node).unwrap()).unwrap();
}
