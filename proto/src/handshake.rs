//! The handshake: ephemeral X25519 with a commitment, RSA-PSS transcript
//! signatures, key confirmation, and per-direction traffic keys.
//!
//! ```text
//!  Initiator (connected)                       Responder (accepted)
//!  ClientHello {versions, suites, H(eI)}  -->
//!                                         <--  ServerHello {version, suite, eR}
//!  KeyReveal {eI}, Identity_I,
//!  Verify_I, Finished_I                   -->  check H(eI); ss = X25519;
//!                                              check sig_I, mac_I  ==> PeerProven
//!                                              (the node decides: sign or refuse)
//!                                         <--  Identity_R, Verify_R, Finished_R
//!  check sig_R, mac_R  ==> PeerProven
//!  ===== AES-256-GCM records, one key + IV per direction =====
//! ```
//!
//! Both sides run the same code; only the transcript order and the labels
//! depend on who connected. The commitment stops either side from choosing its
//! ephemeral key after seeing the other's, which keeps the 12-digit short
//! authentication string ([`Sas`]) meaningful within one connection (the node
//! limits how many exchanges a peer may abandon, which is what bounds it
//! across connections). The initiator proves its identity first, so a
//! responder never signs for a peer it has not verified: a stranger who wants
//! the listener's RSA signature must produce one of its own, and the node can
//! refuse (blocked, untrusted under a trusted-only policy, over a rate limit)
//! before spending anything. Each state is its own type and consumes itself,
//! so a message can only be handled by the state expecting it. See
//! `PROTOCOL.md` for the byte-exact layouts and the key schedule.

pub mod messages;

use std::sync::Arc;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use rand_core::CryptoRng;
use rsa::signature::Verifier;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::identity::{Fingerprint, LocalIdentity, PeerIdentity, fingerprint, node_id_for};
use crate::record::{DirectionKeys, Opener, Sealer};
use messages::*;

/// The newest protocol version this code speaks. Versions 3 and 4 are
/// version 2's handshake byte for byte (the same labels and signature
/// contexts: the negotiated number is in the signed transcript); what they
/// add is in the transfer phase: version 3 offer entries with modification
/// times and text messages, version 4 transfers in batches under one
/// [`Manifest`](crate::transfer::Manifest) (any number of files): see
/// [`crate::transfer`].
pub const PROTOCOL_VERSION: u16 = 4;

/// The protocol version before batches (modification times, texts).
pub const PROTOCOL_VERSION_3: u16 = 3;

/// The oldest protocol version this code speaks (a peer of the previous
/// release offers only it).
pub const PROTOCOL_VERSION_2: u16 = 2;

/// Whether a session of `version` may use the transfer features of version 3
/// ([`crate::transfer::ATTR_TEXT`], [`crate::transfer::ATTR_MTIME`]).
#[must_use]
pub fn has_v3_transfer(version: u16) -> bool {
    version >= PROTOCOL_VERSION_3
}

/// Whether a session of `version` sends its transfer in batches under one
/// [`Manifest`](crate::transfer::Manifest) (version 4).
#[must_use]
pub fn has_batches(version: u16) -> bool {
    version >= PROTOCOL_VERSION
}

/// Suite 0x0001: X25519, RSA-PSS-SHA256 signatures, HKDF-SHA256, AES-256-GCM.
pub const SUITE_X25519_RSAPSS_AES256GCM: u16 = 0x0001;

/// Which side of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We connected.
    Initiator,
    /// We accepted.
    Responder,
}

impl Role {
    fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }
    fn signature_context(self) -> &'static [u8] {
        match self {
            Role::Initiator => b"LocalStream v2 initiator signature\0",
            Role::Responder => b"LocalStream v2 responder signature\0",
        }
    }
    fn finished_label(self) -> &'static [u8] {
        match self {
            Role::Initiator => b"LocalStream v2 finished initiator",
            Role::Responder => b"LocalStream v2 finished responder",
        }
    }
}

/// What a handshake needs from its owner.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our identity.
    pub identity: Arc<LocalIdentity>,
    /// If set, the only peer key we accept (pinned or expected fingerprint).
    pub expected_peer: Option<Fingerprint>,
    /// Versions we speak, most preferred first.
    pub versions: Vec<u16>,
    /// Suites we speak, most preferred first.
    pub suites: Vec<u16>,
}

impl Config {
    /// The default versions and suites for `identity`, accepting any peer key.
    pub fn new(identity: Arc<LocalIdentity>) -> Self {
        Config {
            identity,
            expected_peer: None,
            versions: vec![PROTOCOL_VERSION, PROTOCOL_VERSION_3, PROTOCOL_VERSION_2],
            suites: vec![SUITE_X25519_RSAPSS_AES256GCM],
        }
    }
}

/// Number of distinct short authentication strings: 12 decimal digits.
pub const SAS_CODES: u64 = 1_000_000_000_000;

/// The short authentication string both users can compare: 12 decimal
/// digits, shown in three groups of four (`0421 9377 0615`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sas(pub u64);

impl std::fmt::Display for Sas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04} {:04} {:04}",
            self.0 / 100_000_000,
            self.0 / 10_000 % 10_000,
            self.0 % 10_000
        )
    }
}

/// An established, authenticated connection's keys and facts.
#[derive(Debug)]
pub struct Session {
    /// Our role.
    pub role: Role,
    /// The negotiated version.
    pub version: u16,
    /// The negotiated suite.
    pub suite: u16,
    /// Who the peer proved to be.
    pub peer: PeerIdentity,
    /// The short authentication string.
    pub sas: Sas,
    /// A value unique to this connection, equal on both sides (for logs and history).
    pub session_id: [u8; 16],
    /// Seals what we send.
    pub sealer: Sealer,
    /// Opens what we receive.
    pub opener: Opener,
}

/// Running SHA-256 over every handshake frame, header included.
#[derive(Clone)]
struct Transcript(Sha256);

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transcript({})", crate::error::hex(&self.hash()))
    }
}

impl Transcript {
    fn new() -> Self {
        Transcript(Sha256::new())
    }
    fn add(&mut self, frame: &[u8]) {
        self.0.update(frame);
    }
    fn hash(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// Keys that exist once the ephemeral exchange is done.
struct KeySchedule {
    th_kx: [u8; 32],
    prk: Hkdf<Sha256>,
}

impl KeySchedule {
    fn new(shared: [u8; 32], th_kx: [u8; 32]) -> Result<Self> {
        let shared = Zeroizing::new(shared);
        if bool::from(shared.ct_eq(&[0u8; 32])) {
            return Err(Error::WeakKeyExchange);
        }
        let prk = Hkdf::<Sha256>::new(Some(&th_kx), &shared[..]);
        Ok(KeySchedule { th_kx, prk })
    }

    fn expand<const N: usize>(&self, label: &[u8], context: &[u8]) -> Zeroizing<[u8; N]> {
        let mut out = Zeroizing::new([0u8; N]);
        // N is at most 32 here, far below HKDF's 255 * 32 limit.
        let _ = self.prk.expand_multi_info(&[label, context], &mut out[..]);
        out
    }

    fn finished_mac(&self, role: Role, th: &[u8; 32]) -> [u8; 32] {
        let key = self.expand::<32>(role.finished_label(), &[]);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(th);
        mac.finalize().into_bytes().into()
    }

    fn sas(&self) -> Sas {
        let b = self.expand::<8>(b"LocalStream v2 sas", &[]);
        Sas(u64::from_be_bytes(*b) % SAS_CODES)
    }

    fn direction(&self, dir: &str, th: &[u8; 32]) -> DirectionKeys {
        let key = self.expand::<32>(format!("LocalStream v2 key {dir}").as_bytes(), th);
        let iv = self.expand::<12>(format!("LocalStream v2 iv {dir}").as_bytes(), th);
        DirectionKeys { key: *key, iv: *iv }
    }
}

impl std::fmt::Debug for KeySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySchedule")
            .field("th_kx", &crate::error::hex(&self.th_kx))
            .finish_non_exhaustive()
    }
}

/// Everything shared by the states after the key exchange.
#[derive(Debug)]
struct Keyed {
    role: Role,
    config: Config,
    version: u16,
    suite: u16,
    transcript: Transcript,
    keys: KeySchedule,
}

impl Keyed {
    /// Appends our Identity, Verify and Finished to `out` and the transcript.
    fn send_auth<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, out: &mut Vec<u8>) -> Result<()> {
        let id = &self.config.identity;
        let start = out.len();
        IdentityMsg {
            node_id: id.node_id(),
            name: id.name().to_owned(),
            mac: id.mac(),
            public_key_der: id.public_key_der().to_vec(),
        }
        .encode(out)?;
        self.transcript.add(&out[start..]);

        let mut signed = self.role.signature_context().to_vec();
        signed.extend_from_slice(&self.transcript.hash());
        let sig = id.sign(rng, &signed)?;
        let start = out.len();
        encode_verify(&sig, out)?;
        self.transcript.add(&out[start..]);

        let mac = self.keys.finished_mac(self.role, &self.transcript.hash());
        let start = out.len();
        encode_finished(&mac, out);
        self.transcript.add(&out[start..]);
        Ok(())
    }

    fn into_session(self, peer: PeerIdentity) -> Session {
        let th = self.transcript.hash();
        let i2r = self.keys.direction("i2r", &th);
        let r2i = self.keys.direction("r2i", &th);
        let (send, recv) = match self.role {
            Role::Initiator => (&i2r, &r2i),
            Role::Responder => (&r2i, &i2r),
        };
        let session_id = *self.keys.expand::<16>(b"LocalStream v2 session id", &th);
        Session {
            role: self.role,
            version: self.version,
            suite: self.suite,
            peer,
            sas: self.keys.sas(),
            session_id,
            sealer: Sealer::new(send),
            opener: Opener::new(recv),
        }
    }
}

fn expect(frame: &Frame<'_>, typ: u8, expected: &'static str) -> Result<()> {
    if frame.typ == ALERT {
        return Err(Alert::decode(frame.body)?.into_unverified_error());
    }
    if frame.typ != typ {
        return Err(Error::UnexpectedMessage {
            expected,
            got: frame.typ,
        });
    }
    Ok(())
}

fn ephemeral<R: CryptoRng + ?Sized>(rng: &mut R) -> (StaticSecret, [u8; 32]) {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut seed[..]);
    let secret = StaticSecret::from(*seed);
    let public = XPublic::from(&secret).to_bytes();
    (secret, public)
}

/// Initiator: sent ClientHello, waits for ServerHello.
pub struct AwaitServerHello {
    config: Config,
    secret: StaticSecret,
    public: [u8; 32],
    transcript: Transcript,
}

impl std::fmt::Debug for AwaitServerHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwaitServerHello").finish_non_exhaustive()
    }
}

impl AwaitServerHello {
    /// Starts a handshake as the initiator; `out` receives the ClientHello frame.
    pub fn start<R: CryptoRng + ?Sized>(config: Config, rng: &mut R, out: &mut Vec<u8>) -> Self {
        let (secret, public) = ephemeral(rng);
        let start = out.len();
        ClientHello {
            versions: config.versions.clone(),
            suites: config.suites.clone(),
            commitment: Sha256::digest(public).into(),
        }
        .encode(out);
        let mut transcript = Transcript::new();
        transcript.add(&out[start..]);
        AwaitServerHello {
            config,
            secret,
            public,
            transcript,
        }
    }

    /// Handles ServerHello; `out` receives KeyReveal and our Identity,
    /// Verify and Finished (the initiator proves itself first).
    pub fn handle<R: CryptoRng + ?Sized>(
        mut self,
        frame: Frame<'_>,
        rng: &mut R,
        out: &mut Vec<u8>,
    ) -> Result<AwaitPeerIdentity> {
        expect(&frame, SERVER_HELLO, "ServerHello")?;
        let hello = ServerHello::decode(frame.body)?;
        if !self.config.versions.contains(&hello.version)
            || !self.config.suites.contains(&hello.suite)
        {
            return Err(Error::BadNegotiation);
        }
        self.transcript.add(frame.raw);
        let start = out.len();
        KeyReveal {
            ephemeral: self.public,
        }
        .encode(out);
        self.transcript.add(&out[start..]);
        let shared = self
            .secret
            .diffie_hellman(&XPublic::from(hello.ephemeral))
            .to_bytes();
        let keys = KeySchedule::new(shared, self.transcript.hash())?;
        let mut keyed = Keyed {
            role: Role::Initiator,
            config: self.config,
            version: hello.version,
            suite: hello.suite,
            transcript: self.transcript,
            keys,
        };
        keyed.send_auth(rng, out)?;
        Ok(AwaitPeerIdentity { keyed })
    }
}

/// Responder: waits for ClientHello.
#[derive(Debug)]
pub struct AwaitClientHello {
    config: Config,
}

impl AwaitClientHello {
    /// Starts a handshake as the responder.
    pub fn new(config: Config) -> Self {
        AwaitClientHello { config }
    }

    /// Handles ClientHello: negotiates, and sends ServerHello into `out`.
    pub fn handle<R: CryptoRng + ?Sized>(
        self,
        frame: Frame<'_>,
        rng: &mut R,
        out: &mut Vec<u8>,
    ) -> Result<AwaitKeyReveal> {
        if frame.typ != CLIENT_HELLO {
            // Anything else first (HTTP, TLS, noise) is not our protocol.
            return Err(Error::BadMagic);
        }
        let hello = ClientHello::decode(frame.body)?;
        let version = self
            .config
            .versions
            .iter()
            .copied()
            .filter(|v| hello.versions.contains(v))
            .max()
            .ok_or_else(|| Error::UnsupportedVersion {
                peer: hello.versions.clone(),
                ours: self.config.versions.clone(),
            })?;
        let suite = self
            .config
            .suites
            .iter()
            .copied()
            .find(|s| hello.suites.contains(s))
            .ok_or_else(|| Error::NoCommonSuite {
                peer: hello.suites.clone(),
                ours: self.config.suites.clone(),
            })?;
        let mut transcript = Transcript::new();
        transcript.add(frame.raw);
        let (secret, public) = ephemeral(rng);
        let start = out.len();
        ServerHello {
            version,
            suite,
            ephemeral: public,
        }
        .encode(out);
        transcript.add(&out[start..]);
        Ok(AwaitKeyReveal {
            config: self.config,
            version,
            suite,
            commitment: hello.commitment,
            secret,
            transcript,
        })
    }
}

/// Responder: sent ServerHello, waits for the initiator to open its commitment.
pub struct AwaitKeyReveal {
    config: Config,
    version: u16,
    suite: u16,
    commitment: [u8; 32],
    secret: StaticSecret,
    transcript: Transcript,
}

impl std::fmt::Debug for AwaitKeyReveal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwaitKeyReveal")
            .field("version", &self.version)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl AwaitKeyReveal {
    /// Handles KeyReveal (the initiator's Identity, Verify and Finished follow).
    pub fn handle(mut self, frame: Frame<'_>) -> Result<AwaitPeerIdentity> {
        expect(&frame, KEY_REVEAL, "KeyReveal")?;
        let reveal = KeyReveal::decode(frame.body)?;
        let opened: [u8; 32] = Sha256::digest(reveal.ephemeral).into();
        if opened != self.commitment {
            return Err(Error::CommitmentMismatch);
        }
        self.transcript.add(frame.raw);
        let shared = self
            .secret
            .diffie_hellman(&XPublic::from(reveal.ephemeral))
            .to_bytes();
        let keys = KeySchedule::new(shared, self.transcript.hash())?;
        Ok(AwaitPeerIdentity {
            keyed: Keyed {
                role: Role::Responder,
                config: self.config,
                version: self.version,
                suite: self.suite,
                transcript: self.transcript,
                keys,
            },
        })
    }
}

/// Either side: waits for the peer's Identity.
#[derive(Debug)]
pub struct AwaitPeerIdentity {
    keyed: Keyed,
}

impl AwaitPeerIdentity {
    /// The short authentication string (known as soon as the keys are agreed).
    pub fn sas(&self) -> Sas {
        self.keyed.keys.sas()
    }

    /// Handles the peer's Identity.
    pub fn handle(mut self, frame: Frame<'_>) -> Result<AwaitPeerVerify> {
        expect(&frame, IDENTITY, "Identity")?;
        let msg = IdentityMsg::decode(frame.body)?;
        let peer = PeerIdentity {
            node_id: msg.node_id,
            name: msg.name,
            mac: msg.mac,
            fingerprint: fingerprint(&msg.public_key_der),
            public_key_der: msg.public_key_der,
        };
        let verifier = peer.verifying_key()?;
        if peer.node_id != node_id_for(&peer.fingerprint) {
            return Err(Error::NodeIdNotBound);
        }
        if let Some(expected) = self.keyed.config.expected_peer
            && expected != peer.fingerprint
        {
            return Err(Error::UnexpectedPeerKey {
                expected,
                got: peer.fingerprint,
            });
        }
        self.keyed.transcript.add(frame.raw);
        Ok(AwaitPeerVerify {
            keyed: self.keyed,
            peer,
            verifier,
        })
    }
}

/// Either side: waits for the peer's signature over the transcript.
pub struct AwaitPeerVerify {
    keyed: Keyed,
    peer: PeerIdentity,
    verifier: rsa::pss::VerifyingKey<Sha256>,
}

impl std::fmt::Debug for AwaitPeerVerify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwaitPeerVerify")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl AwaitPeerVerify {
    /// Handles the peer's Verify.
    pub fn handle(mut self, frame: Frame<'_>) -> Result<AwaitPeerFinished> {
        expect(&frame, VERIFY, "Verify")?;
        let sig = decode_verify(frame.body)?;
        let sig = rsa::pss::Signature::try_from(sig).map_err(|_| Error::BadSignature)?;
        let mut signed = self.keyed.role.peer().signature_context().to_vec();
        signed.extend_from_slice(&self.keyed.transcript.hash());
        self.verifier
            .verify(&signed, &sig)
            .map_err(|_| Error::BadSignature)?;
        self.keyed.transcript.add(frame.raw);
        Ok(AwaitPeerFinished {
            keyed: self.keyed,
            peer: self.peer,
        })
    }
}

/// Either side: waits for the peer's key confirmation.
#[derive(Debug)]
pub struct AwaitPeerFinished {
    keyed: Keyed,
    peer: PeerIdentity,
}

impl AwaitPeerFinished {
    /// Handles the peer's Finished: the peer has proved its key and the
    /// keys. What is left is ours to do ([`PeerProven::finish`]).
    pub fn handle(mut self, frame: Frame<'_>) -> Result<PeerProven> {
        expect(&frame, FINISHED, "Finished")?;
        let mac = decode_finished(frame.body)?;
        let want = self
            .keyed
            .keys
            .finished_mac(self.keyed.role.peer(), &self.keyed.transcript.hash());
        if !bool::from(mac.ct_eq(&want)) {
            return Err(Error::BadFinished);
        }
        self.keyed.transcript.add(frame.raw);
        Ok(PeerProven {
            keyed: self.keyed,
            peer: self.peer,
        })
    }
}

/// Either side: the peer has proved who it is. The initiator's handshake is
/// complete; the responder has not signed anything yet, so its node can
/// still refuse this peer (with a plaintext alert) before spending a
/// signature on it.
#[derive(Debug)]
pub struct PeerProven {
    keyed: Keyed,
    peer: PeerIdentity,
}

impl PeerProven {
    /// Who the peer proved to be.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// The short authentication string.
    pub fn sas(&self) -> Sas {
        self.keyed.keys.sas()
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.keyed.role
    }

    /// Completes the handshake. The responder's Identity, Verify and
    /// Finished go into `out` (this is where it signs: an RSA private-key
    /// operation, milliseconds of CPU); the initiator has nothing left to send.
    pub fn finish<R: CryptoRng + ?Sized>(
        mut self,
        rng: &mut R,
        out: &mut Vec<u8>,
    ) -> Result<Session> {
        if self.keyed.role == Role::Responder {
            self.keyed.send_auth(rng, out)?;
        }
        Ok(self.keyed.into_session(self.peer))
    }
}

/// A handshake in any state, for I/O loops that just feed frames in.
#[derive(Debug)]
pub enum Handshake {
    /// Initiator waiting for ServerHello.
    AwaitServerHello(AwaitServerHello),
    /// Responder waiting for ClientHello.
    AwaitClientHello(AwaitClientHello),
    /// Responder waiting for KeyReveal.
    AwaitKeyReveal(AwaitKeyReveal),
    /// Waiting for the peer's Identity.
    AwaitPeerIdentity(AwaitPeerIdentity),
    /// Waiting for the peer's Verify.
    AwaitPeerVerify(AwaitPeerVerify),
    /// Waiting for the peer's Finished.
    AwaitPeerFinished(AwaitPeerFinished),
}

/// The result of feeding one frame to a [`Handshake`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per connection, moved a handful of times
pub enum Progress {
    /// More frames are needed.
    Continue(Handshake),
    /// The peer proved who it is; [`PeerProven::finish`] completes the handshake.
    Proven(Box<PeerProven>),
}

impl Handshake {
    /// Starts as the initiator; `out` receives the first frame to send.
    pub fn initiator<R: CryptoRng + ?Sized>(
        config: Config,
        rng: &mut R,
        out: &mut Vec<u8>,
    ) -> Self {
        Handshake::AwaitServerHello(AwaitServerHello::start(config, rng, out))
    }

    /// Starts as the responder.
    pub fn responder(config: Config) -> Self {
        Handshake::AwaitClientHello(AwaitClientHello::new(config))
    }

    /// Feeds one received frame; `out` receives whatever must be sent next.
    pub fn handle<R: CryptoRng + ?Sized>(
        self,
        frame: Frame<'_>,
        rng: &mut R,
        out: &mut Vec<u8>,
    ) -> Result<Progress> {
        use Handshake as H;
        Ok(Progress::Continue(match self {
            H::AwaitServerHello(s) => H::AwaitPeerIdentity(s.handle(frame, rng, out)?),
            H::AwaitClientHello(s) => H::AwaitKeyReveal(s.handle(frame, rng, out)?),
            H::AwaitKeyReveal(s) => H::AwaitPeerIdentity(s.handle(frame)?),
            H::AwaitPeerIdentity(s) => H::AwaitPeerVerify(s.handle(frame)?),
            H::AwaitPeerVerify(s) => H::AwaitPeerFinished(s.handle(frame)?),
            H::AwaitPeerFinished(s) => {
                return Ok(Progress::Proven(Box::new(s.handle(frame)?)));
            }
        }))
    }
}

/// Encodes a plaintext alert frame to send when a handshake fails.
pub fn alert_frame(err: &Error) -> Vec<u8> {
    let mut out = Vec::new();
    Alert {
        status: err.status(),
        message: err.to_string(),
    }
    .encode(&mut out);
    out
}
