//! Long-term identities: ours (with the signing key) and a peer's (proved by the handshake).

use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::pss::{SigningKey, VerifyingKey};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Another implementation of this node's handshake signature, faster than
/// the rsa crate's: RSA-PSS with SHA-256 and a 32-byte salt (RFC 8017), with
/// the identity's own key ([`LocalIdentity::with_signer`]). It takes the
/// salt's randomness itself (the engine's uses ring and the OS's generator;
/// this crate takes no randomness but what it is given).
pub trait Signer: Send + Sync {
    /// The signature of `msg` (as long as the modulus), or `None` when
    /// signing failed.
    fn sign(&self, msg: &[u8]) -> Option<Vec<u8>>;
    /// The key's modulus, big-endian, without leading zeros.
    fn modulus(&self) -> Vec<u8>;
}

/// Smallest accepted RSA modulus, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest accepted RSA modulus, in bits.
pub const MAX_RSA_BITS: usize = 4096;
/// Largest SPKI DER accepted on the wire (a 4096-bit key is about 550 bytes).
pub const MAX_PUBLIC_KEY_DER: usize = 2048;
/// Largest display name on the wire, in bytes (as in mDNS TXT: 63).
pub const MAX_NAME_BYTES: usize = 63;

/// A 32-byte key fingerprint: SHA-256 of the public key's SPKI DER encoding.
pub type Fingerprint = [u8; 32];

/// SHA-256 of a public key's SPKI DER encoding.
pub fn fingerprint(spki_der: &[u8]) -> Fingerprint {
    Sha256::digest(spki_der).into()
}

/// The node id bound to a key: the first 16 bytes of its fingerprint, with
/// the UUID version set to 8 (custom) and the RFC 4122 variant bits, so it
/// reads as a UUID and is never the nil UUID. Nobody can claim another
/// node's id without its key, and a node that regenerates its key gets a
/// new id.
pub fn node_id_for(fingerprint: &Fingerprint) -> [u8; 16] {
    let mut id = [0u8; 16];
    id.copy_from_slice(&fingerprint[..16]);
    id[6] = (id[6] & 0x0f) | 0x80;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// Checks an RSA public key against the identity key policy: 2048..=4096 bits, e = 65537.
pub fn check_key_policy(key: &rsa::PublicKey) -> Result<()> {
    let bits = key.n().bit_width() as usize;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(Error::InvalidPublicKey(
            "RSA modulus must be 2048 to 4096 bits",
        ));
    }
    if *key.e_bytes() != [0x01, 0x00, 0x01] {
        return Err(Error::InvalidPublicKey("RSA public exponent must be 65537"));
    }
    Ok(())
}

/// This node's identity: who it says it is and the key that proves it.
#[derive(Clone)]
pub struct LocalIdentity {
    node_id: [u8; 16],
    name: String,
    mac: Option<[u8; 6]>,
    signing_key: SigningKey<Sha256>,
    /// Signs instead of `signing_key`, when set.
    signer: Option<std::sync::Arc<dyn Signer>>,
    public_key_der: Vec<u8>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("node_id", &crate::error::hex(&self.node_id))
            .field("name", &self.name)
            .field("fingerprint", &crate::error::hex(&self.fingerprint))
            .finish_non_exhaustive()
    }
}

impl LocalIdentity {
    /// Builds an identity from its parts, checking the key policy and name
    /// length. The node id is derived from the key ([`node_id_for`]).
    pub fn new(name: &str, mac: Option<[u8; 6]>, key: rsa::PrivateKey) -> Result<Self> {
        check_key_policy(key.as_public_key())?;
        if name.len() > MAX_NAME_BYTES {
            return Err(Error::Malformed("display name longer than 63 bytes"));
        }
        let public_key_der = key
            .as_public_key()
            .to_public_key_der()
            .map_err(|_| Error::InvalidPublicKey("cannot encode public key"))?
            .into_vec();
        let fingerprint = fingerprint(&public_key_der);
        Ok(LocalIdentity {
            node_id: node_id_for(&fingerprint),
            name: name.to_owned(),
            mac,
            fingerprint,
            public_key_der,
            signing_key: SigningKey::new_with_salt_len(key, 32),
            signer: None,
        })
    }

    /// This identity, making its handshake signatures with `signer` (the
    /// same scheme, faster) instead of the rsa crate.
    ///
    /// # Errors
    /// [`Error::InvalidPublicKey`] when `signer`'s key is not this
    /// identity's (its modulus differs).
    pub fn with_signer(mut self, signer: std::sync::Arc<dyn Signer>) -> Result<Self> {
        let ours = self.signing_key.as_ref().as_public_key().n_bytes();
        let first = ours.iter().position(|&b| b != 0).unwrap_or(ours.len());
        if signer.modulus() != ours[first..] {
            return Err(Error::InvalidPublicKey(
                "the signer's key is not this identity's",
            ));
        }
        self.signer = Some(signer);
        Ok(self)
    }

    /// The node id (a UUID's 16 bytes).
    pub fn node_id(&self) -> [u8; 16] {
        self.node_id
    }
    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The MAC address, where known.
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.mac
    }
    /// The public key as SPKI DER.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }
    /// SHA-256 of the public key DER.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
    /// The signature of `msg` (RSA-PSS, SHA-256, 32-byte salt): by the
    /// signer when there is one, else by the rsa crate with `rng`'s salt.
    pub(crate) fn sign<R: rand_core::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        msg: &[u8],
    ) -> Result<Vec<u8>> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        match &self.signer {
            Some(signer) => signer.sign(msg).ok_or(Error::SigningFailed),
            None => Ok(self
                .signing_key
                .try_sign_with_rng(rng, msg)
                .map_err(|_| Error::SigningFailed)?
                .to_vec()),
        }
    }
}

/// What the handshake proved about the peer. The key is proved, and so is the
/// node id (it is derived from the key); the name and MAC are claims bound to
/// that key by its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The peer's node id ([`node_id_for`] its fingerprint; checked).
    pub node_id: [u8; 16],
    /// The display name the peer claims (signed; untrusted text).
    pub name: String,
    /// The MAC address the peer claims, if any.
    pub mac: Option<[u8; 6]>,
    /// The peer's public key, SPKI DER.
    pub public_key_der: Vec<u8>,
    /// SHA-256 of `public_key_der`.
    pub fingerprint: Fingerprint,
}

impl PeerIdentity {
    /// Parses and checks the peer's public key, returning the verifier for its signatures.
    pub(crate) fn verifying_key(&self) -> Result<VerifyingKey<Sha256>> {
        let key = rsa::PublicKey::from_public_key_der(&self.public_key_der)
            .map_err(|_| Error::InvalidPublicKey("not an RSA SubjectPublicKeyInfo"))?;
        check_key_policy(&key)?;
        Ok(VerifyingKey::new_with_salt_len(key, 32))
    }
}
