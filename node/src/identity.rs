//! This node's long-term identity: an RSA key, a node id and a display name.
//!
//! Two files live in the node's home directory (created with mode 0700):
//!
//! ```text
//!  <home>/identity.key   PKCS#8 PEM RSA private key, mode 0600
//!  <home>/node.json      {"version":1,"node_id":"<uuid>","name":"...","created":<unix seconds>}
//! ```
//!
//! Both are created on first run and written atomically (temporary file,
//! fsync, rename, fsync of the directory). Later runs load and reuse them. A
//! file that cannot be read or parsed is an error naming that file: the
//! identity is never regenerated behind the user's back, because peers pin this
//! node by its key's fingerprint. Like ssh, a key file readable by group or
//! others is refused.
//!
//! The fingerprint is SHA-256 of the public key's SubjectPublicKeyInfo DER.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};

use crate::fsutil::{AtomicWriteError, write_atomic};

/// Name of the private key file inside the home directory.
pub const KEY_FILE: &str = "identity.key";
/// Name of the node metadata file inside the home directory.
pub const NODE_FILE: &str = "node.json";
/// RSA modulus size used when the caller has no preference.
pub const DEFAULT_KEY_BITS: usize = 3072;
/// Smallest accepted RSA modulus, in bits.
pub const MIN_KEY_BITS: usize = 2048;
/// Largest accepted RSA modulus, in bits.
pub const MAX_KEY_BITS: usize = 4096;
/// Longest display name, in bytes (fits a DNS label / mDNS TXT value).
pub const MAX_NAME_BYTES: usize = localstream_discovery::txt::MAX_NAME_BYTES;
/// Name used when neither the user nor the host name gives a usable one.
pub const FALLBACK_NAME: &str = "localstream-node";

const NODE_FILE_VERSION: u32 = 1;
/// node.json is tiny; refuse to read anything much larger.
const MAX_NODE_FILE_BYTES: u64 = 64 * 1024;
/// A PEM RSA key of 4096 bits is about 3.3 KiB.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Errors from loading or creating the identity. Every variant that concerns
/// a file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The requested key size is outside `MIN_KEY_BITS..=MAX_KEY_BITS`.
    #[error("RSA key size {bits} is not supported (use {MIN_KEY_BITS}..={MAX_KEY_BITS} bits)")]
    InvalidKeyBits {
        /// The requested size.
        bits: usize,
    },
    /// Reading, writing or creating a file or directory failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot read", "cannot create", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The private key file is accessible by group or others.
    #[error(
        "permissions {mode:04o} for {} are too open: the private key must not be accessible \
         by others; run `chmod 600 {}`",
        path.display(), path.display()
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a valid PKCS#8 PEM RSA private key.
    #[error("{} is not a valid PKCS#8 PEM RSA private key ({reason}); restore it from a backup, \
             or remove it and {NODE_FILE} to create a new identity", path.display())]
    CorruptKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The LocalSend certificate file is not a certificate and its key.
    #[error("{} is not a valid LocalSend certificate ({reason}); remove it to make a new one \
             (LocalSend devices that know this node will then see a new fingerprint)", path.display())]
    CorruptCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key parses but is not acceptable (size or public exponent).
    #[error("{} holds an unsupported RSA key: {reason}", path.display())]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// node.json cannot be parsed or has an unknown version.
    #[error("{} is corrupt ({reason}); restore it from a backup, or remove it and {KEY_FILE} \
             to create a new identity", path.display())]
    CorruptNodeFile {
        /// The node file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// One of the two identity files exists without the other.
    #[error("{} exists but {} is missing; restore the missing file, or remove both to create \
             a new identity", present.display(), missing.display())]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },
    /// RSA key generation failed.
    #[error("RSA key generation failed: {0}")]
    KeyGeneration(#[source] rsa::Error),
    /// Encoding the key or node.json failed.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

impl From<AtomicWriteError> for IdentityError {
    fn from(e: AtomicWriteError) -> Self {
        IdentityError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

/// Result alias for this module.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// This node's long-term identity.
#[derive(Debug)]
pub struct Identity {
    /// Node id, derived from the key ([`localstream_proto::node_id_for`] its
    /// fingerprint), so it is stable across runs and nobody else can claim it.
    pub node_id: uuid::Uuid,
    /// Display name, already sanitised (at most 63 bytes, no control characters).
    pub name: String,
    /// MAC address of a network interface, when one could be found.
    pub mac: Option<[u8; 6]>,
    /// The long-term RSA signing key.
    pub key: rsa::PrivateKey,
}

/// Contents of node.json.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    version: u32,
    node_id: uuid::Uuid,
    name: String,
    /// Creation time, seconds since the Unix epoch.
    created: u64,
}

impl Identity {
    /// The public key as SubjectPublicKeyInfo DER.
    ///
    /// # Panics
    /// Never for a key of sane size: DER encoding only fails on lengths far
    /// beyond any RSA key (and [`load_or_create`] has already encoded the key
    /// once, returning an error instead).
    #[must_use]
    pub fn public_key_der(&self) -> Vec<u8> {
        match spki_der(&self.key) {
            Ok(der) => der,
            // Invariant, not input: checked by load_or_create (see above).
            Err(e) => panic!("SPKI DER encoding of an RSA public key failed: {e}"),
        }
    }

    /// SHA-256 of [`Identity::public_key_der`]: what peers pin.
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint_of(&self.public_key_der())
    }
}

/// The handshake's signer from ring, for `key` (RSA-PSS, SHA-256, 32-byte
/// salt, as the rsa crate signs in the proto crate; about 3x faster: 1.4 ms
/// for RSA-3072 on the benchmark machine, against 3.8 ms), or `None` when
/// ring does not take the key (then the rsa crate signs).
#[cfg(feature = "ring")]
#[must_use]
pub fn fast_signer(key: &rsa::PrivateKey) -> Option<std::sync::Arc<dyn localstream_proto::Signer>> {
    let der = key.to_pkcs8_der().ok()?;
    match ring::rsa::KeyPair::from_pkcs8(der.as_bytes()) {
        Ok(key) => Some(std::sync::Arc::new(RingSigner {
            key,
            rng: ring::rand::SystemRandom::new(),
        })),
        Err(e) => {
            tracing::debug!(error = %e, "ring does not take the identity key: the rsa crate signs");
            None
        }
    }
}

/// No ring: the rsa crate signs.
#[cfg(not(feature = "ring"))]
#[must_use]
pub fn fast_signer(
    _key: &rsa::PrivateKey,
) -> Option<std::sync::Arc<dyn localstream_proto::Signer>> {
    None
}

/// ring's RSA-PSS signer, with the OS's randomness for the salt.
#[cfg(feature = "ring")]
struct RingSigner {
    key: ring::rsa::KeyPair,
    rng: ring::rand::SystemRandom,
}

#[cfg(feature = "ring")]
impl localstream_proto::Signer for RingSigner {
    fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&ring::signature::RSA_PSS_SHA256, &self.rng, msg, &mut sig)
            .ok()?;
        Some(sig)
    }

    fn modulus(&self) -> Vec<u8> {
        ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.key.public()).n
    }
}

/// SHA-256 of a public key's SPKI DER (use for peers' keys too).
#[must_use]
pub fn fingerprint_of(spki_der: &[u8]) -> [u8; 32] {
    localstream_proto::fingerprint(spki_der)
}

/// Full fingerprint as 64 lowercase hex digits.
#[must_use]
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    localstream_proto::error::hex(fp)
}

/// First 64 bits of the fingerprint, for humans: `a1b2:c3d4:e5f6:0718`.
#[must_use]
pub fn short_fingerprint(fp: &[u8; 32]) -> String {
    group_hex(&fp[..8])
}

/// Hex in groups of four digits: `a1b2:c3d4`.
#[must_use]
pub fn group_hex(bytes: &[u8]) -> String {
    bytes
        .chunks(2)
        .map(localstream_proto::error::hex)
        .collect::<Vec<_>>()
        .join(":")
}

/// Loads the identity stored in `home`, or creates one on first run.
///
/// `bits` is the RSA modulus size for a new key (`MIN_KEY_BITS..=MAX_KEY_BITS`,
/// checked even when a key already exists). `name_override`, when given, is
/// the display name for this run (sanitised); node.json keeps the stored
/// name (the host name from the first run), which applies otherwise.
///
/// # Errors
/// See [`IdentityError`]: unreadable or corrupt files, a key file open to
/// group/others, an unsupported key, a missing half of the identity, or a
/// failure to generate or write a new one.
pub fn load_or_create(home: &Path, bits: usize, name_override: Option<&str>) -> Result<Identity> {
    if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
        return Err(IdentityError::InvalidKeyBits { bits });
    }
    create_home(home)?;
    let key_path = home.join(KEY_FILE);
    let node_path = home.join(NODE_FILE);
    let key_exists = exists(&key_path)?;
    let node_exists = exists(&node_path)?;

    let identity = match (key_exists, node_exists) {
        (true, true) => load(home, &key_path, &node_path, name_override)?,
        (false, false) => create(home, bits, name_override)?,
        (true, false) => {
            return Err(IdentityError::Incomplete {
                present: key_path,
                missing: node_path,
            });
        }
        (false, true) => {
            return Err(IdentityError::Incomplete {
                present: node_path,
                missing: key_path,
            });
        }
    };
    Ok(Identity {
        mac: local_mac(),
        ..identity
    })
}

fn load(
    home: &Path,
    key_path: &Path,
    node_path: &Path,
    name_override: Option<&str>,
) -> Result<Identity> {
    let pem = read_key_file(key_path)?;
    let key = rsa::PrivateKey::from_pkcs8_pem(&pem).map_err(|e| IdentityError::CorruptKey {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    check_key(&key, key_path)?;

    let text = read_limited(node_path, MAX_NODE_FILE_BYTES)?;
    let corrupt = |reason: String| IdentityError::CorruptNodeFile {
        path: node_path.to_owned(),
        reason,
    };
    let text = String::from_utf8(text).map_err(|_| corrupt("not UTF-8".into()))?;
    let mut node: NodeFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if node.version != NODE_FILE_VERSION {
        return Err(corrupt(format!(
            "unsupported version {} (expected {NODE_FILE_VERSION})",
            node.version
        )));
    }
    if node.node_id.is_nil() {
        return Err(corrupt("node_id is the nil UUID".into()));
    }
    let bound = bound_node_id(&key);
    // Nodes made before protocol 2 had a random id: it becomes the one bound
    // to the key (peers re-key their stores the same way, by fingerprint).
    let migrated = node.node_id != bound;
    if migrated {
        tracing::info!(old = %node.node_id, new = %bound, "node id is now derived from the key");
        node.node_id = bound;
    }

    if migrated {
        write_node_file(home, &node)?;
    }
    let name = name_override
        .and_then(sanitize_name)
        .or_else(|| sanitize_name(&node.name))
        .unwrap_or_else(default_name);
    Ok(Identity {
        node_id: node.node_id,
        name,
        mac: None,
        key,
    })
}

fn create(home: &Path, bits: usize, name_override: Option<&str>) -> Result<Identity> {
    let key = rsa::PrivateKey::new(&mut rand::rng(), bits).map_err(IdentityError::KeyGeneration)?;
    let key_path = home.join(KEY_FILE);
    // Also proves that public_key_der() cannot fail for this key.
    check_key(&key, &key_path)?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| IdentityError::Encode {
            what: "private key",
            reason: e.to_string(),
        })?;

    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let node = NodeFile {
        version: NODE_FILE_VERSION,
        node_id: bound_node_id(&key),
        name: default_name(),
        created,
    };
    // Key first: a crash in between leaves an `Incomplete` error, never a
    // node.json that silently gets a different key later.
    write_atomic(home, KEY_FILE, pem.as_bytes(), 0o600)?;
    write_node_file(home, &node)?;
    Ok(Identity {
        node_id: node.node_id,
        name: name_override.and_then(sanitize_name).unwrap_or(node.name),
        mac: None,
        key,
    })
}

/// Checks size, public exponent and encodability of a key.
fn check_key(key: &rsa::PrivateKey, path: &Path) -> Result<()> {
    let unsupported = |reason: String| IdentityError::UnsupportedKey {
        path: path.to_owned(),
        reason,
    };
    // The same policy the handshake applies to peers' keys.
    localstream_proto::identity::check_key_policy(key.as_public_key())
        .map_err(|e| unsupported(e.to_string()))?;
    key.validate()
        .map_err(|e| unsupported(format!("key is inconsistent: {e}")))?;
    spki_der(key).map_err(|e| IdentityError::Encode {
        what: "public key",
        reason: e.to_string(),
    })?;
    Ok(())
}

/// The node id that belongs to `key`.
fn bound_node_id(key: &rsa::PrivateKey) -> uuid::Uuid {
    let der = spki_der(key).unwrap_or_default();
    uuid::Uuid::from_bytes(localstream_proto::node_id_for(&fingerprint_of(&der)))
}

fn spki_der(key: &rsa::PrivateKey) -> rsa::pkcs8::spki::Result<Vec<u8>> {
    Ok(key.as_public_key().to_public_key_der()?.into_vec())
}

fn write_node_file(home: &Path, node: &NodeFile) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(node).map_err(|e| IdentityError::Encode {
        what: NODE_FILE,
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    write_atomic(home, NODE_FILE, &json, 0o644)?;
    Ok(())
}

/// Cleans a display name: drops control and bidi-formatting characters,
/// trims whitespace, cuts to [`MAX_NAME_BYTES`] on a character boundary.
/// `None` when nothing is left.
#[must_use]
pub fn sanitize_name(raw: &str) -> Option<String> {
    let cleaned = localstream_proto::names::strip_control_or_bidi(raw, usize::MAX);
    let name = localstream_proto::names::strip_control_or_bidi(cleaned.trim(), MAX_NAME_BYTES);
    let name = name.trim_end();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The host name, sanitised, or [`FALLBACK_NAME`].
fn default_name() -> String {
    sanitize_name(&gethostname::gethostname().to_string_lossy())
        .unwrap_or_else(|| FALLBACK_NAME.to_owned())
}

/// The MAC of some interface, if the platform tells us; never fatal.
fn local_mac() -> Option<[u8; 6]> {
    match mac_address::get_mac_address() {
        Ok(Some(mac)) => Some(mac.bytes()),
        _ => None,
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IdentityError + use<> {
    let path = path.to_owned();
    move |source| IdentityError::Io {
        action,
        path,
        source,
    }
}

fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("cannot access", path)(e)),
    }
}

fn create_home(home: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(home)
        .map_err(io_err("cannot create directory", home))
}

/// Reads the key file, refusing it when group or others can access it.
pub(crate) fn read_key_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(io_err("cannot open", path))?;
    // Check the opened file itself, not the path, so nothing can be swapped in between.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(io_err("cannot stat", path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(IdentityError::InsecurePermissions {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
    }
    let bytes = read_from(file, path, MAX_KEY_FILE_BYTES)?;
    String::from_utf8(bytes).map_err(|_| IdentityError::CorruptKey {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(io_err("cannot open", path))?;
    read_from(file, path, limit)
}

fn read_from(file: File, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("cannot read", path))?;
    if bytes.len() as u64 > limit {
        return Err(IdentityError::Io {
            action: "refusing to read",
            path: path.to_owned(),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file is larger than {limit} bytes"),
            ),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BITS: usize = 2048;

    fn home() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home").join("localstream");
        (tmp, home)
    }

    #[cfg(feature = "ring")]
    #[test]
    fn ring_signs_as_the_handshake_verifies() {
        use rsa::signature::Verifier;
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create(&dir.path().join("home"), BITS, None).unwrap();
        let signer = fast_signer(&id.key).unwrap();
        let msg = b"LocalStream handshake transcript";
        let sig = signer.sign(msg).unwrap();
        assert_eq!(sig.len(), BITS / 8);
        // The verifier the handshake uses (RSA-PSS, SHA-256, 32-byte salt).
        let verifier = rsa::pss::VerifyingKey::<sha2::Sha256>::new_with_salt_len(
            id.key.as_public_key().clone(),
            32,
        );
        let sig = rsa::pss::Signature::try_from(&sig[..]).unwrap();
        verifier.verify(msg, &sig).unwrap();
        assert!(verifier.verify(b"another transcript", &sig).is_err());
        // Its key is the identity's.
        localstream_proto::LocalIdentity::new(&id.name, None, id.key)
            .unwrap()
            .with_signer(signer)
            .unwrap();
    }

    #[test]
    fn create_then_reload_is_stable() {
        let (_tmp, home) = home();
        let a = load_or_create(&home, BITS, Some("alice's laptop")).unwrap();
        assert_eq!(a.name, "alice's laptop");
        assert_eq!(rsa::traits::PublicKeyParts::n(&a.key).bit_width(), 2048);
        let b = load_or_create(&home, BITS, None).unwrap();
        assert_eq!(a.node_id, b.node_id);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.public_key_der(), b.public_key_der());
        // The name given to the first run was for that run only.
        assert_ne!(b.name, "alice's laptop");
        assert_eq!(a.mac, b.mac);

        // The stored node.json has the documented shape.
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(home.join(NODE_FILE)).unwrap()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["node_id"], a.node_id.to_string());
        assert!(json["created"].as_u64().unwrap() > 1_600_000_000);
        // The key is PKCS#8 PEM.
        let pem = fs::read_to_string(home.join(KEY_FILE)).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn name_override_is_for_this_run_only() {
        let (_tmp, home) = home();
        // Even on the first run the override is not what node.json keeps.
        let a = load_or_create(&home, BITS, Some("first")).unwrap();
        assert_eq!(a.name, "first");
        let stored = fs::read(home.join(NODE_FILE)).unwrap();
        let b = load_or_create(&home, BITS, None).unwrap();
        assert_eq!(b.name, default_name());
        let c = load_or_create(&home, BITS, Some("  new\x1b[31m name\n ")).unwrap();
        assert_eq!(c.name, "new[31m name");
        assert_eq!(fs::read(home.join(NODE_FILE)).unwrap(), stored);
        let d = load_or_create(&home, BITS, None).unwrap();
        assert_eq!(d.name, default_name());
        assert_eq!(a.node_id, d.node_id);
        assert_eq!(a.fingerprint(), d.fingerprint());
    }

    #[cfg(unix)]
    #[test]
    fn modes() {
        use std::os::unix::fs::PermissionsExt;
        let (_tmp, home) = home();
        load_or_create(&home, BITS, None).unwrap();
        let key_mode = fs::metadata(home.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&home).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (_tmp, home) = home();
        load_or_create(&home, BITS, None).unwrap();
        let key_path = home.join(KEY_FILE);
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_or_create(&home, BITS, None).unwrap_err();
        assert!(
            matches!(err, IdentityError::InsecurePermissions { mode: 0o640, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(msg.contains(&key_path.display().to_string()), "{msg}");
        // Fixing the mode fixes the error; nothing was regenerated.
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
        load_or_create(&home, BITS, None).unwrap();
    }

    #[test]
    fn corrupt_node_file_names_the_file() {
        let (_tmp, home) = home();
        let a = load_or_create(&home, BITS, None).unwrap();
        let node_path = home.join(NODE_FILE);
        fs::write(&node_path, b"{\"version\":1,\"node_id\":").unwrap();
        let err = load_or_create(&home, BITS, None).unwrap_err();
        assert!(
            matches!(err, IdentityError::CorruptNodeFile { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&node_path.display().to_string()));
        // The broken file is left alone for the user to inspect.
        assert_eq!(
            fs::read(&node_path).unwrap(),
            b"{\"version\":1,\"node_id\":"
        );

        let json = format!(
            "{{\"version\":2,\"node_id\":\"{}\",\"name\":\"x\",\"created\":1}}",
            a.node_id
        );
        fs::write(&node_path, json).unwrap();
        let err = load_or_create(&home, BITS, None).unwrap_err();
        assert!(err.to_string().contains("unsupported version 2"), "{err}");
    }

    #[test]
    fn corrupt_key_names_the_file() {
        let (_tmp, home) = home();
        load_or_create(&home, BITS, None).unwrap();
        let key_path = home.join(KEY_FILE);
        write_atomic(
            &home,
            KEY_FILE,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n",
            0o600,
        )
        .unwrap();
        let err = load_or_create(&home, BITS, None).unwrap_err();
        assert!(matches!(err, IdentityError::CorruptKey { .. }), "{err:?}");
        assert!(err.to_string().contains(&key_path.display().to_string()));
    }

    #[test]
    fn half_an_identity_is_an_error() {
        let (_tmp, home) = home();
        load_or_create(&home, BITS, None).unwrap();
        let key = fs::read(home.join(KEY_FILE)).unwrap();
        fs::remove_file(home.join(NODE_FILE)).unwrap();
        let err = load_or_create(&home, BITS, None).unwrap_err();
        assert!(matches!(err, IdentityError::Incomplete { .. }), "{err:?}");
        // Not regenerated.
        assert_eq!(fs::read(home.join(KEY_FILE)).unwrap(), key);
        assert!(!home.join(NODE_FILE).exists());
    }

    #[test]
    fn key_size_bounds() {
        let (_tmp, home) = home();
        for bits in [0, 1024, 2047, 4097, 8192] {
            let err = load_or_create(&home, bits, None).unwrap_err();
            assert!(
                matches!(err, IdentityError::InvalidKeyBits { .. }),
                "{err:?}"
            );
        }
        assert!(!home.exists(), "nothing is created for a bad request");
    }

    #[test]
    fn stored_weak_key_is_refused() {
        let (_tmp, home) = home();
        load_or_create(&home, BITS, None).unwrap();
        let weak = rsa::PrivateKey::new(&mut rand::rng(), 1024).unwrap();
        let pem = weak.to_pkcs8_pem(LineEnding::LF).unwrap();
        write_atomic(&home, KEY_FILE, pem.as_bytes(), 0o600).unwrap();
        let err = load_or_create(&home, BITS, None).unwrap_err();
        assert!(
            matches!(err, IdentityError::UnsupportedKey { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn fingerprint_formats() {
        let mut fp = [0u8; 32];
        for (i, b) in fp.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(0x1d) ^ 0xa1;
        }
        let hex = fingerprint_hex(&fp);
        assert_eq!(hex.len(), 64);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(fingerprint_hex(&[0xab; 32]), "ab".repeat(32));
        let short = short_fingerprint(&fp);
        assert_eq!(
            short,
            format!(
                "{}:{}:{}:{}",
                &hex[0..4],
                &hex[4..8],
                &hex[8..12],
                &hex[12..16]
            )
        );
        assert_eq!(short_fingerprint(&[0x01; 32]), "0101:0101:0101:0101");
        // SHA-256("") as a known answer.
        assert_eq!(
            fingerprint_hex(&fingerprint_of(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn name_sanitising() {
        assert_eq!(sanitize_name("  box  ").as_deref(), Some("box"));
        assert_eq!(sanitize_name("a\u{202e}b\tc\u{85}").as_deref(), Some("abc"));
        assert_eq!(sanitize_name(" \n\x1b "), None);
        let long = "é".repeat(40); // 80 bytes
        let cut = sanitize_name(&long).unwrap();
        assert_eq!(cut.len(), 62);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(sanitize_name("日本").as_deref(), Some("日本"));
        assert!(!default_name().is_empty());
    }
}
