//! Handshake message bodies (plaintext frames, before the record layer exists).

use crate::codec::{Reader, WriteExt, encode_frame};
use crate::error::{Error, Result};
use crate::identity::{MAX_NAME_BYTES, MAX_PUBLIC_KEY_DER};
use crate::status::Status;

/// Frame type of ClientHello.
pub const CLIENT_HELLO: u8 = 0x01;
/// Frame type of ServerHello.
pub const SERVER_HELLO: u8 = 0x02;
/// Frame type of KeyReveal.
pub const KEY_REVEAL: u8 = 0x03;
/// Frame type of Identity.
pub const IDENTITY: u8 = 0x04;
/// Frame type of Verify.
pub const VERIFY: u8 = 0x05;
/// Frame type of Finished.
pub const FINISHED: u8 = 0x06;
/// Frame type of a plaintext alert (only before the handshake completes).
pub const ALERT: u8 = 0x0f;

/// The first four bytes of every ClientHello body.
pub const MAGIC: [u8; 4] = *b"LSTR";
/// Largest signature accepted (RSA-4096).
pub const MAX_SIGNATURE: usize = 512;
/// Largest alert message, in bytes.
pub const MAX_ALERT_MESSAGE: usize = 1024;
/// Most versions or suites a hello may list.
pub const MAX_LIST: usize = 32;

/// Initiator -> responder, first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// Supported protocol versions, most preferred first.
    pub versions: Vec<u16>,
    /// Supported cipher suites, most preferred first.
    pub suites: Vec<u16>,
    /// SHA-256 of the initiator's ephemeral X25519 public key.
    pub commitment: [u8; 32],
}

/// Responder -> initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// The chosen version.
    pub version: u16,
    /// The chosen suite.
    pub suite: u16,
    /// The responder's ephemeral X25519 public key.
    pub ephemeral: [u8; 32],
}

/// Initiator -> responder: opens the commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReveal {
    /// The initiator's ephemeral X25519 public key.
    pub ephemeral: [u8; 32],
}

/// Either side: who it claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMsg {
    /// Node id.
    pub node_id: [u8; 16],
    /// Display name.
    pub name: String,
    /// MAC address, if known.
    pub mac: Option<[u8; 6]>,
    /// RSA public key, SPKI DER.
    pub public_key_der: Vec<u8>,
}

/// An alert: a status code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Why.
    pub status: Status,
    /// Explanation (untrusted text when received).
    pub message: String,
}

fn list(r: &mut Reader<'_>) -> Result<Vec<u16>> {
    let n = r.u8()? as usize;
    if n == 0 || n > MAX_LIST {
        return Err(Error::Malformed("ClientHello list length"));
    }
    (0..n).map(|_| r.u16()).collect()
}

fn put_list(out: &mut Vec<u8>, items: &[u16]) {
    out.push(items.len().min(MAX_LIST) as u8);
    for v in items.iter().take(MAX_LIST) {
        out.put_u16(*v);
    }
}

impl ClientHello {
    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b = Vec::with_capacity(48);
        b.extend_from_slice(&MAGIC);
        put_list(&mut b, &self.versions);
        put_list(&mut b, &self.suites);
        b.extend_from_slice(&self.commitment);
        encode_frame(CLIENT_HELLO, &b, out);
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "ClientHello");
        if r.array::<4>().map_err(|_| Error::BadMagic)? != MAGIC {
            return Err(Error::BadMagic);
        }
        let versions = list(&mut r)?;
        let suites = list(&mut r)?;
        let commitment = r.array()?;
        r.finish()?;
        Ok(ClientHello {
            versions,
            suites,
            commitment,
        })
    }
}

impl ServerHello {
    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b = Vec::with_capacity(36);
        b.put_u16(self.version);
        b.put_u16(self.suite);
        b.extend_from_slice(&self.ephemeral);
        encode_frame(SERVER_HELLO, &b, out);
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "ServerHello");
        let m = ServerHello {
            version: r.u16()?,
            suite: r.u16()?,
            ephemeral: r.array()?,
        };
        r.finish()?;
        Ok(m)
    }
}

impl KeyReveal {
    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_frame(KEY_REVEAL, &self.ephemeral, out);
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "KeyReveal");
        let m = KeyReveal {
            ephemeral: r.array()?,
        };
        r.finish()?;
        Ok(m)
    }
}

impl IdentityMsg {
    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut b = Vec::with_capacity(64 + self.public_key_der.len());
        b.extend_from_slice(&self.node_id);
        b.put_bytes8(self.name.as_bytes())?;
        match self.mac {
            Some(mac) => b.put_bytes8(&mac)?,
            None => b.push(0),
        }
        b.put_bytes16(&self.public_key_der, MAX_PUBLIC_KEY_DER)?;
        encode_frame(IDENTITY, &b, out);
        Ok(())
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "Identity");
        let node_id = r.array()?;
        let name = r.str8()?;
        if name.len() > MAX_NAME_BYTES {
            return Err(Error::Malformed("Identity name longer than 63 bytes"));
        }
        let mac = match r.bytes8()? {
            [] => None,
            m => Some(<[u8; 6]>::try_from(m).map_err(|_| Error::Malformed("Identity MAC length"))?),
        };
        let public_key_der = r.bytes16(MAX_PUBLIC_KEY_DER)?.to_vec();
        r.finish()?;
        Ok(IdentityMsg {
            node_id,
            name: name.to_owned(),
            mac,
            public_key_der,
        })
    }
}

/// Appends a Verify frame.
pub fn encode_verify(signature: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut b = Vec::with_capacity(2 + signature.len());
    b.put_bytes16(signature, MAX_SIGNATURE)?;
    encode_frame(VERIFY, &b, out);
    Ok(())
}

/// Decodes a Verify body into the signature bytes.
pub fn decode_verify(body: &[u8]) -> Result<&[u8]> {
    let mut r = Reader::new(body, "Verify");
    let sig = r.bytes16(MAX_SIGNATURE)?;
    r.finish()?;
    Ok(sig)
}

/// Appends a Finished frame.
pub fn encode_finished(mac: &[u8; 32], out: &mut Vec<u8>) {
    encode_frame(FINISHED, mac, out);
}

/// Decodes a Finished body.
pub fn decode_finished(body: &[u8]) -> Result<[u8; 32]> {
    let mut r = Reader::new(body, "Finished");
    let mac = r.array()?;
    r.finish()?;
    Ok(mac)
}

impl Alert {
    /// Encodes the alert body (used both as a plaintext frame and inside an encrypted record).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut msg = self.message.as_str();
        while msg.len() > MAX_ALERT_MESSAGE {
            // Cut on a character boundary.
            let mut end = MAX_ALERT_MESSAGE;
            while !msg.is_char_boundary(end) {
                end -= 1;
            }
            msg = &msg[..end];
        }
        let mut b = Vec::with_capacity(4 + msg.len());
        b.put_u16(self.status.code());
        b.put_u16(msg.len() as u16);
        b.extend_from_slice(msg.as_bytes());
        b
    }

    /// Appends a plaintext alert frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_frame(ALERT, &self.encode_body(), out);
    }

    /// Decodes an alert body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "Alert");
        let status = Status::from_code(r.u16()?);
        let message = r.str16(MAX_ALERT_MESSAGE)?.to_owned();
        r.finish()?;
        Ok(Alert { status, message })
    }

    /// The error a received alert becomes.
    pub fn into_error(self) -> Error {
        Error::PeerAlert {
            status: self.status,
            message: self.message,
            verified: true,
        }
    }

    /// The error a plaintext (unauthenticated) alert frame ends a connection with.
    pub fn into_unverified_error(self) -> Error {
        Error::PeerAlert {
            status: self.status,
            message: self.message,
            verified: false,
        }
    }
}
