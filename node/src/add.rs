//! `localstream add <name> <ip[:port]>`: remember a peer that discovery
//! cannot see (another subnet, a VPN, a network that drops multicast), so
//! that `send <name>` reaches it afterwards, even with `--no-discovery`.
//!
//! It connects, runs the handshake (the peer proves its key), pins the key
//! like a first transfer would, and stores the address and the name given;
//! then it closes without offering anything. The verification code is shown
//! as on any first contact: compare it with the one the listener prints.

use std::net::SocketAddr;
use std::sync::Arc;

use localstream_proto::names::escape_for_terminal;
use localstream_proto::{LocalIdentity, Status};
use uuid::Uuid;

use crate::conn::RecordWriter;
use crate::error::{Error, Result};
use crate::identity::sanitize_name;
use crate::store::{Contact, PeerStore, Seen, now_secs};
use crate::{discover, outln, send, trust};

/// Runs `add`.
pub async fn run(
    identity: Arc<LocalIdentity>,
    store: &PeerStore,
    name: &str,
    addr: SocketAddr,
    first_contact: crate::confirm::FirstContact,
) -> Result<()> {
    let alias = sanitize_name(name).filter(|n| n == name).ok_or_else(|| {
        Error::Usage(format!(
            "'{}' cannot be a peer name (printable text, at most 63 bytes)",
            escape_for_terminal(name)
        ))
    })?;
    let (_reader, wr, session, addr) = send::open(identity, &[addr]).await?;
    let mut writer = RecordWriter {
        inner: wr,
        sealer: session.sealer,
    };
    let peer = session.peer;
    let contacted = match trust::check(store, &peer).await {
        Ok(c) => c,
        Err(e) => {
            writer
                .alert(Status::Cancelled, "the peer was not added")
                .await;
            return Err(e);
        }
    };
    if contacted.first {
        let impostor = match trust::name_of_pinned(store, &peer).await {
            Some(e) => Some(e),
            None => trust::address_of_pinned(store, &peer, addr).await,
        };
        if let Some(e) = impostor {
            writer
                .alert(Status::Cancelled, "the peer was not added")
                .await;
            return Err(e);
        }
        let what = format!("Pin it as '{}'", escape_for_terminal(&alias));
        if let Err(e) =
            crate::confirm::first_contact(first_contact, &peer, &session.sas, &what).await
        {
            writer
                .alert(Status::Cancelled, "the peer was not added")
                .await;
            return Err(e);
        }
    }
    eprintln!("{}", trust::code_line(&peer, &session.sas, contacted));
    let seen = Seen {
        node_id: Uuid::from_bytes(peer.node_id),
        fingerprint: peer.fingerprint,
        name: peer.name.clone(),
        mac: peer.mac,
        addr: Some(addr),
        from: None,
    };
    let id = seen.node_id;
    let store2 = store.clone();
    let given = alias.clone();
    let contact = tokio::task::spawn_blocking(move || {
        store2.update(|d| {
            let c = d.contact(&seen, now_secs());
            if !matches!(c, Contact::KeyChanged { .. }) {
                d.set_alias(&id, given);
            }
            c
        })
    })
    .await??;
    // Nothing to send: say so, so that the listener logs why we left.
    writer
        .alert(Status::Cancelled, "only pinning the key (localstream add)")
        .await;
    if let Contact::KeyChanged { .. } = contact {
        return Err(Error::Usage(
            "its key changed since it was pinned: see `localstream forget`".into(),
        ));
    }
    outln!(
        "added {} as '{}' at {addr}: `localstream send {} FILE` reaches it from now on",
        discover::label_proven(&peer),
        escape_for_terminal(&alias),
        escape_for_terminal(&alias)
    );
    Ok(())
}
