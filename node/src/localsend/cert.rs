//! This node's LocalSend identity: a self-signed certificate, made once per
//! home and kept in `<home>/localsend.pem` (mode 0600), so its fingerprint
//! (SHA-256 of the certificate's DER, what LocalSend devices remember) stays
//! the same across restarts.
//!
//! It is made as LocalSend makes its own: an RSA-2048 key, `CN=LocalSend
//! User`, no names, valid from 1975 to 4096 (LocalSend checks the validity
//! period and the self-signature of the certificates it meets).

use std::io;
use std::path::{Path, PathBuf};

use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::identity::IdentityError;

/// The file, in the home.
pub const CERT_FILE: &str = "localsend.pem";
/// The key's size, as LocalSend's own.
pub const KEY_BITS: usize = 2048;

/// This node's LocalSend certificate and key.
#[derive(Debug)]
pub struct Certificate {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// Its private key, PKCS#8 DER.
    key: PrivatePkcs8KeyDer<'static>,
    /// SHA-256 of `cert`.
    pub fingerprint: [u8; 32],
}

impl Certificate {
    /// The private key, for rustls.
    #[must_use]
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The fingerprint as LocalSend writes it (64 upper-case hex digits).
    #[must_use]
    pub fn fingerprint_text(&self) -> String {
        super::wire::fingerprint_text(&self.fingerprint)
    }
}

/// Loads the certificate of `home`, or makes and stores one.
///
/// Two processes making one at once agree: the first one stored wins and
/// the other loads it.
///
/// # Errors
/// An unreadable, corrupt or group/world-readable file, or a failure to make
/// or store a new certificate.
pub fn load_or_create(home: &Path) -> Result<Certificate, IdentityError> {
    let path = home.join(CERT_FILE);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => load(&path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(home, &path),
        Err(source) => Err(IdentityError::Io {
            action: "cannot stat",
            path,
            source,
        }),
    }
}

fn load(path: &Path) -> Result<Certificate, IdentityError> {
    let pem = crate::identity::read_key_file(path)?;
    let corrupt = |reason: String| IdentityError::CorruptCertificate {
        path: path.to_owned(),
        reason,
    };
    let cert = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| corrupt(format!("no certificate: {e}")))?;
    let key = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| corrupt(format!("no PKCS#8 private key: {e}")))?;
    // The key must be the certificate's: rustls checks the pair.
    let pair =
        rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(key.clone_key()))
            .map_err(|e| corrupt(format!("unusable private key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(vec![cert.clone()], pair);
    certified
        .keys_match()
        .map_err(|e| corrupt(format!("the key is not the certificate's: {e}")))?;
    Ok(Certificate {
        fingerprint: super::wire::sha256(&cert),
        cert,
        key,
    })
}

fn create(home: &Path, path: &Path) -> Result<Certificate, IdentityError> {
    let encode = |reason: String| IdentityError::Encode {
        what: "LocalSend certificate",
        reason,
    };
    let key =
        rsa::PrivateKey::new(&mut rand::rng(), KEY_BITS).map_err(IdentityError::KeyGeneration)?;
    let key_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| encode(e.to_string()))?;
    let key_der = key.to_pkcs8_der().map_err(|e| encode(e.to_string()))?;
    let pkcs8 = PrivatePkcs8KeyDer::from(key_der.as_bytes().to_vec());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| encode(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "LocalSend User");
    let cert = params
        .self_signed(&pair)
        .map_err(|e| encode(e.to_string()))?;
    let text = format!("{}{}", key_pem.as_str(), cert.pem());
    store_new(home, path, text.as_bytes())?;
    load(path)
}

/// Stores `contents` under `path` unless a file is there already (another
/// process made one meanwhile: that one is kept).
fn store_new(home: &Path, path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    let temp = format!(".{CERT_FILE}.{}.new", std::process::id());
    crate::fsutil::write_atomic(home, &temp, contents, 0o600)?;
    let temp_path: PathBuf = home.join(&temp);
    let linked = std::fs::hard_link(&temp_path, path);
    let _ = std::fs::remove_file(&temp_path);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(IdentityError::Io {
            action: "cannot store",
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_loaded_with_the_same_fingerprint() {
        let home = tempfile::tempdir().unwrap();
        let made = load_or_create(home.path()).unwrap();
        let again = load_or_create(home.path()).unwrap();
        assert_eq!(made.fingerprint, again.fingerprint);
        assert_eq!(made.fingerprint, super::super::wire::sha256(&again.cert));
        assert_eq!(made.fingerprint_text().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.path().join(CERT_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let home = tempfile::tempdir().unwrap();
        crate::fsutil::write_atomic(home.path(), CERT_FILE, b"not a certificate", 0o600).unwrap();
        let err = load_or_create(home.path()).unwrap_err().to_string();
        assert!(err.contains(CERT_FILE), "{err}");
    }
}
