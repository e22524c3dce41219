//! Files dropped in the browser, on their way to a peer: each drop gets a
//! staging folder (`<home>/ui-uploads/<id>/`), the page streams each file
//! into it (one `PUT` per file, written as it arrives, never held whole in
//! memory), and the send goes from there, as a send from disk does (so it
//! resumes after a cut). The folder is removed when its send ends (dropped
//! again, the same files resume from what the peer holds), every staging
//! folder is removed when the UI stops, and whatever an earlier run left
//! (killed outright) at start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures_util::StreamExt;
use localstream_proto::names::validate_wire_path;
use tokio::io::AsyncWriteExt;

/// The folder under the home that holds the staging folders.
pub(crate) const DIR: &str = "ui-uploads";
/// Staging folders open at once.
const MAX_OPEN: usize = 64;

/// The staging folders of this run.
#[derive(Debug)]
pub(crate) struct Uploads {
    root: PathBuf,
    open: Mutex<HashMap<String, PathBuf>>,
}

impl Uploads {
    /// The staging area under `home`, emptied of what an earlier run left.
    pub(crate) fn new(home: &Path) -> Self {
        let root = home.join(DIR);
        let _ = std::fs::remove_dir_all(&root);
        Uploads {
            root,
            open: Mutex::default(),
        }
    }

    /// A new, empty staging folder.
    pub(crate) fn create(&self) -> Result<String, String> {
        let mut open = self.lock();
        if open.len() >= MAX_OPEN {
            return Err("too many uploads waiting to be sent".into());
        }
        let id = super::guard::random_hex(8);
        let dir = self.root.join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        open.insert(id.clone(), dir);
        Ok(id)
    }

    /// The staging folder `id`.
    pub(crate) fn dir(&self, id: &str) -> Option<PathBuf> {
        self.lock().get(id).cloned()
    }

    /// Writes one file of upload `id` at `rel` from `body`, as it arrives.
    pub(crate) async fn put(
        &self,
        id: &str,
        rel: &str,
        body: axum::body::Body,
    ) -> Result<(), String> {
        let dir = self.dir(id).ok_or("no such upload")?;
        let parts = validate_wire_path(rel).map_err(|e| format!("{rel:?}: {e}"))?;
        let path = parts.iter().fold(dir, |p, c| p.join(c));
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| format!("{rel}: {e}"))?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("{rel}: the upload broke off: {e}"))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("{rel}: {e}"))?;
        }
        file.flush().await.map_err(|e| format!("{rel}: {e}"))?;
        Ok(())
    }

    /// What upload `id` holds at its top: the paths to send.
    pub(crate) fn entries(&self, id: &str) -> Result<Vec<PathBuf>, String> {
        let dir = self.dir(id).ok_or("no such upload")?;
        let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        out.sort();
        if out.is_empty() {
            return Err("the upload holds no files".into());
        }
        Ok(out)
    }

    /// Upload `id` was sent: its folder goes.
    pub(crate) fn remove(&self, id: &str) {
        if let Some(dir) = self.lock().remove(id) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PathBuf>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_land_under_their_upload_and_nowhere_else() {
        let home = tempfile::tempdir().unwrap();
        let u = Uploads::new(home.path());
        let id = u.create().unwrap();
        u.put(&id, "photos/a.txt", axum::body::Body::from("hello"))
            .await
            .unwrap();
        let dir = u.dir(&id).unwrap();
        assert_eq!(std::fs::read(dir.join("photos/a.txt")).unwrap(), b"hello");
        for bad in ["../x", "/etc/passwd", "a/../../b", "a\nb", ""] {
            assert!(
                u.put(&id, bad, axum::body::Body::from("x")).await.is_err(),
                "{bad:?}"
            );
        }
        // Never over an existing file.
        assert!(
            u.put(&id, "photos/a.txt", axum::body::Body::from("x"))
                .await
                .is_err()
        );
        assert!(
            u.put("nope", "b.txt", axum::body::Body::from("x"))
                .await
                .is_err()
        );
        assert_eq!(u.entries(&id).unwrap(), vec![dir.join("photos")]);
        u.remove(&id);
        assert!(!dir.exists());
    }
}
