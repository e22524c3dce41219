//! `localstream add <name> <ip[:port]>`: remember a peer that discovery
//! cannot see (another subnet, a VPN, a network that drops multicast), so
//! that `send <name>` reaches it afterwards, even with `--no-discovery`.
//!
//! It connects, runs the handshake (the peer proves its key), pins the key
//! like a first transfer would, and stores the address and the name given;
//! then it closes without offering anything. The verification code is shown
//! as on any first contact: compare it with the one the listener prints.

use std::net::SocketAddr;

use localstream_proto::Status;
use localstream_proto::names::escape_for_terminal;
use uuid::Uuid;

use crate::confirm::{Asker, FirstContact};
use crate::conn::RecordWriter;
use crate::context::Context;
use crate::error::{Error, Result, TrustError};
use crate::event::{Notice, Then};
use crate::identity::sanitize_name;
use crate::label::PeerLabel;
use crate::send;
use crate::store::{Contact, Realiased, Seen, now_secs};
use crate::trust::{self, Refusal};

/// A peer `add` pinned.
#[derive(Debug, Clone)]
pub struct Added {
    /// Who it is.
    pub peer: PeerLabel,
    /// The name it is stored under.
    pub alias: String,
    /// Where it was reached.
    pub addr: SocketAddr,
    /// What the new name replaced.
    pub replaced: Realiased,
}

/// Runs `add`.
pub(crate) async fn run(
    cx: &Context,
    name: &str,
    addr: SocketAddr,
    first_contact: FirstContact,
) -> Result<Added> {
    let store = &cx.store;
    let alias = sanitize_name(name).filter(|n| n == name).ok_or_else(|| {
        Error::Usage(format!(
            "'{}' cannot be a peer name (printable text, at most 63 bytes)",
            escape_for_terminal(name)
        ))
    })?;
    let (_reader, wr, session, addr) = send::open(cx.identity.clone(), &[addr]).await?;
    let mut writer = RecordWriter {
        inner: wr,
        sealer: session.sealer,
    };
    let peer = session.peer;
    let contacted = match trust::admit(store, &peer, trust::Reached::Dialed(addr)).await {
        Ok(c) => c,
        Err(refusal) => {
            writer
                .alert(Status::Cancelled, "the peer was not added")
                .await;
            return Err(match refusal {
                Refusal::KeyChanged(e) | Refusal::Store(e) | Refusal::Impostor(e) => e,
                Refusal::Blocked => Error::from(TrustError::Blocked(format!(
                    "{} (id {})",
                    PeerLabel::of(&peer).short(),
                    Uuid::from_bytes(peer.node_id)
                ))),
            });
        }
    };
    if contacted.first {
        let asker = Asker {
            policy: first_contact,
            questions: &cx.questions,
            events: &cx.events,
        };
        let then = Then::Pin(alias.clone());
        if let Err(e) = crate::confirm::first_contact(asker, &peer, &session.sas, then).await {
            writer
                .alert(Status::Cancelled, "the peer was not added")
                .await;
            return Err(e);
        }
    }
    cx.events.notice(Notice::Code {
        peer: PeerLabel::of(&peer),
        code: session.sas,
        first: contacted.first,
        trust: contacted.trust,
    });
    let seen = Seen {
        node_id: Uuid::from_bytes(peer.node_id),
        fingerprint: peer.fingerprint,
        name: peer.name.clone(),
        mac: peer.mac,
        addr: Some(addr),
        from: None,
        localsend: false,
    };
    let id = seen.node_id;
    let store2 = store.clone();
    let given = alias.clone();
    let (contact, replaced) = tokio::task::spawn_blocking(move || {
        store2.update(|d| {
            let c = d.contact(&seen, now_secs());
            let replaced = if matches!(c, Contact::KeyChanged { .. }) {
                Realiased::default()
            } else {
                d.set_alias(&id, given)
            };
            (c, replaced)
        })
    })
    .await??;
    // Nothing to send: say so, so that the listener logs why we left.
    writer
        .alert(Status::Cancelled, "only pinning the key (localstream add)")
        .await;
    if let Contact::KeyChanged { .. } = contact {
        return Err(TrustError::PinChangedMeanwhile.into());
    }
    Ok(Added {
        peer: PeerLabel::of(&peer),
        alias,
        addr,
        replaced,
    })
}
