//! AES-256-GCM for the record layer, from one of two implementations.
//!
//! With the `ring` feature (the default) the record layer uses ring's
//! AES-GCM, whose assembly (AES-NI/VAES with carry-less multiplication,
//! stitched) runs about three times faster than the portable RustCrypto
//! `aes-gcm` crate on the same core, which matters because the cipher runs
//! over every byte on both ends. Without it, `aes-gcm` is used: pure Rust,
//! for targets where ring's C and assembly cannot be built. Both produce the
//! same bytes (AES-256-GCM, 96-bit nonce, 128-bit tag); the tests check the
//! one in use against `aes-gcm`, and the PROTOCOL.md worked example against
//! an independent `aes-gcm` computation.

/// Tag length in bytes.
pub(crate) const TAG: usize = 16;

#[cfg(feature = "ring")]
use fast as imp;
#[cfg(not(feature = "ring"))]
use portable as imp;

/// An AES-256-GCM key ready to seal or open.
#[derive(Clone)]
pub(crate) struct Aead(imp::Key);

impl Aead {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Aead(imp::Key::new(key))
    }

    /// Encrypts `buf` in place; returns the tag. Fails only for messages
    /// beyond GCM's length limit.
    pub(crate) fn seal(&self, nonce: [u8; 12], aad: &[u8], buf: &mut [u8]) -> Option<[u8; TAG]> {
        self.0.seal(nonce, aad, buf)
    }

    /// Authenticates and decrypts `buf` in place; `false` (and `buf` must not
    /// be used) when the tag does not match.
    #[must_use]
    pub(crate) fn open(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG],
    ) -> bool {
        self.0.open(nonce, aad, buf, tag)
    }
}

#[cfg(feature = "ring")]
mod fast {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

    #[derive(Clone)]
    pub(super) struct Key(LessSafeKey);

    impl Key {
        pub(super) fn new(key: &[u8; 32]) -> Self {
            match UnboundKey::new(&AES_256_GCM, key) {
                Ok(k) => Key(LessSafeKey::new(k)),
                // ring refuses only a key of the wrong length; ours is 32 bytes by type.
                Err(_) => unreachable!("AES-256 takes a 32-byte key"),
            }
        }

        pub(super) fn seal(&self, nonce: [u8; 12], aad: &[u8], buf: &mut [u8]) -> Option<[u8; 16]> {
            let tag = self
                .0
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    buf,
                )
                .ok()?;
            tag.as_ref().try_into().ok()
        }

        pub(super) fn open(
            &self,
            nonce: [u8; 12],
            aad: &[u8],
            buf: &mut [u8],
            tag: &[u8; 16],
        ) -> bool {
            self.0
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    Tag::from(*tag),
                    buf,
                    0..,
                )
                .is_ok()
        }
    }
}

// Always compiled, so that its tests run whichever implementation is in use.
#[cfg_attr(feature = "ring", allow(dead_code))]
mod portable {
    use aes_gcm::Aes256Gcm;
    use aes_gcm::aead::{AeadInOut, KeyInit};

    #[derive(Clone)]
    pub(super) struct Key(Aes256Gcm);

    impl Key {
        pub(super) fn new(key: &[u8; 32]) -> Self {
            Key(Aes256Gcm::new(&(*key).into()))
        }

        pub(super) fn seal(&self, nonce: [u8; 12], aad: &[u8], buf: &mut [u8]) -> Option<[u8; 16]> {
            let tag = self
                .0
                .encrypt_inout_detached(&nonce.into(), aad, buf.into())
                .ok()?;
            Some(tag.into())
        }

        pub(super) fn open(
            &self,
            nonce: [u8; 12],
            aad: &[u8],
            buf: &mut [u8],
            tag: &[u8; 16],
        ) -> bool {
            self.0
                .decrypt_inout_detached(&nonce.into(), aad, buf.into(), &(*tag).into())
                .is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::Aes256Gcm;
    use aes_gcm::aead::{AeadInOut, KeyInit};

    /// Both implementations agree with RustCrypto's `aes-gcm` used directly,
    /// both ways, for lengths around the block size and a large record.
    #[test]
    fn agrees_with_aes_gcm() {
        let key = [0x42u8; 32];
        let ours = Aead::new(&key);
        check(&ours, Aead::seal, Aead::open);
        let p = portable::Key::new(&key);
        check(&p, portable::Key::seal, portable::Key::open);
        #[cfg(feature = "ring")]
        {
            let f = fast::Key::new(&key);
            check(&f, fast::Key::seal, fast::Key::open);
        }
    }

    fn check<K>(
        k: &K,
        seal: impl Fn(&K, [u8; 12], &[u8], &mut [u8]) -> Option<[u8; TAG]>,
        open: impl Fn(&K, [u8; 12], &[u8], &mut [u8], &[u8; TAG]) -> bool,
    ) {
        let reference = Aes256Gcm::new(&[0x42u8; 32].into());
        for len in [0usize, 1, 15, 16, 17, 255, 4096, 1 << 20] {
            let nonce = [len as u8; 12];
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut a = plain.clone();
            let tag_a = seal(k, nonce, b"header", &mut a).unwrap();
            let mut b = plain.clone();
            let tag_b: [u8; 16] = reference
                .encrypt_inout_detached(&nonce.into(), b"header", b.as_mut_slice().into())
                .unwrap()
                .into();
            assert_eq!((&a, tag_a), (&b, tag_b), "len {len}");
            assert!(open(k, nonce, b"header", &mut b, &tag_b));
            assert_eq!(b, plain);
            let mut bad = tag_a;
            bad[0] ^= 1;
            assert!(!open(k, nonce, b"header", &mut a.clone(), &bad));
            assert!(!open(k, nonce, b"other", &mut a.clone(), &tag_a));
        }
    }
}
