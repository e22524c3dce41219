//! Collecting an offer before anyone consented to it: bounded in time, in
//! number and in memory for untrusted peers, so that strangers trickling or
//! inflating offers can neither exhaust the listener nor keep a trusted
//! peer's offer out.
//!
//! ```text
//!  session ─► OfferSlots::take (untrusted: one of MAX_STRANGER_OFFERS, at most
//!             MAX_OFFERS_PER_PEER per node id; trusted: always) ─► read_offer:
//!               first record within FIRST_OFFER_WAIT (the sender's user may be
//!               comparing codes), the whole offer within OFFER_DEADLINE of it,
//!               an untrusted offer within PRE_CONSENT_BYTES of memory, all of
//!               them together within STRANGER_OFFER_BYTES
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use localstream_proto::record::RecordType;
use localstream_proto::transfer::fsm::{CollectingOffer, Deciding, OfferStep};
use localstream_proto::transfer::{Manifest, OfferEntry};
use localstream_proto::{Error as ProtoError, Opener, Status};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::conn::{FrameReader, IDLE_TIMEOUT};
use crate::error::{Error, Result};

/// Offers from untrusted peers collected or awaiting a decision at once.
pub const MAX_STRANGER_OFFERS: usize = 8;
/// ... of which one node id may have this many.
pub const MAX_OFFERS_PER_PEER: usize = 2;
/// How long the first Offer record may take after the handshake: the
/// sender's user may be comparing the verification code first
/// ([`crate::confirm::CONFIRM_TIMEOUT`]).
pub(super) const FIRST_OFFER_WAIT: Duration =
    Duration::from_secs(crate::confirm::CONFIRM_TIMEOUT.as_secs() + 30);
/// How long the rest of the offer may take once its first record arrived.
pub const OFFER_DEADLINE: Duration = Duration::from_secs(30);
/// Memory one untrusted peer's offer may hold before consent (paths and
/// entries; a trusted peer's is bounded by the protocol's 16 MiB of paths).
pub const PRE_CONSENT_BYTES: usize = 8 << 20;
/// Memory all untrusted offers together may hold before consent.
pub(super) const STRANGER_OFFER_BYTES: usize = 48 << 20;
/// How long an offer waits for a slot before it is refused as busy.
pub const SLOT_WAIT: Duration = Duration::from_secs(10);
/// How often a waiting offer looks for a free slot.
const SLOT_POLL: Duration = Duration::from_millis(20);
/// Bytes counted per entry besides its path (the entry and its list slot).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<OfferEntry>() + 16;

/// The listener's offer slots (cheap to clone).
#[derive(Debug, Clone)]
pub struct OfferSlots {
    strangers: Arc<Semaphore>,
    /// Memory budget for untrusted offers, in KiB.
    memory: Arc<Semaphore>,
    per_peer: Arc<Mutex<HashMap<[u8; 16], usize>>>,
}

impl Default for OfferSlots {
    fn default() -> Self {
        OfferSlots {
            strangers: Arc::new(Semaphore::new(MAX_STRANGER_OFFERS)),
            memory: Arc::new(Semaphore::new(STRANGER_OFFER_BYTES >> 10)),
            per_peer: Arc::default(),
        }
    }
}

/// An offer's place (released when dropped: once decided).
#[derive(Debug)]
pub struct OfferSlot {
    stranger: Option<StrangerSlot>,
}

#[derive(Debug)]
struct StrangerSlot {
    _slot: OwnedSemaphorePermit,
    memory: Vec<OwnedSemaphorePermit>,
    held_kib: usize,
    slots: OfferSlots,
    peer: [u8; 16],
}

impl Drop for StrangerSlot {
    fn drop(&mut self) {
        let mut m = self
            .slots
            .per_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

impl OfferSlots {
    /// [`OfferSlots::take`], waiting up to [`SLOT_WAIT`] for a slot.
    pub async fn wait_take(&self, peer: [u8; 16], trusted: bool) -> Option<OfferSlot> {
        let give_up = tokio::time::Instant::now() + SLOT_WAIT;
        loop {
            if let Some(slot) = self.take(peer, trusted) {
                return Some(slot);
            }
            if tokio::time::Instant::now() >= give_up {
                return None;
            }
            tokio::time::sleep(SLOT_POLL).await;
        }
    }

    /// A slot for an offer from `peer`; `trusted` peers always get one.
    /// `None`: refuse with Busy.
    #[must_use]
    pub fn take(&self, peer: [u8; 16], trusted: bool) -> Option<OfferSlot> {
        if trusted {
            return Some(OfferSlot { stranger: None });
        }
        let permit = self.strangers.clone().try_acquire_owned().ok()?;
        {
            let mut m = self.per_peer.lock().unwrap_or_else(PoisonError::into_inner);
            let n = m.entry(peer).or_default();
            if *n >= MAX_OFFERS_PER_PEER {
                return None;
            }
            *n += 1;
        }
        Some(OfferSlot {
            stranger: Some(StrangerSlot {
                _slot: permit,
                memory: Vec::new(),
                held_kib: 0,
                slots: self.clone(),
                peer,
            }),
        })
    }
}

impl OfferSlot {
    /// Accounts for an offer now holding `bytes`. `Err`: over a budget.
    fn hold(&mut self, bytes: usize) -> Result<()> {
        let Some(s) = &mut self.stranger else {
            return Ok(());
        };
        let too_large = |what: &str| {
            let message = format!(
                "the offer is too large for {what} before consent ({} MiB of names); send the \
                 folders one by one, or ask the receiver's user to trust this node",
                PRE_CONSENT_BYTES >> 20
            );
            Error::refused(Status::TooLarge, message)
        };
        if bytes > PRE_CONSENT_BYTES {
            return Err(too_large("an untrusted peer"));
        }
        let kib = bytes.div_ceil(1024);
        if kib > s.held_kib {
            let more = u32::try_from(kib - s.held_kib).unwrap_or(u32::MAX);
            let permit = s
                .slots
                .memory
                .clone()
                .try_acquire_many_owned(more)
                .map_err(|_| {
                    let message =
                        "the receiver holds too many offers from untrusted peers; try again";
                    Error::refused(Status::Busy, message)
                })?;
            s.memory.push(permit);
            s.held_kib = kib;
        }
        Ok(())
    }
}

/// Reads a whole offer within its deadlines and budgets, through the
/// receiver's [`CollectingOffer`] state. Its slot is taken once the first
/// record arrives (a session that never offers holds none), waiting up to
/// [`SLOT_WAIT`] for one (offers are usually decided at once). In a session
/// of protocol version 4 (`batched`) the first record is the Manifest, and
/// the offer read is the first batch.
pub(super) async fn read_offer<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    opener: &mut Opener,
    slots: &OfferSlots,
    peer: [u8; 16],
    trusted: bool,
    batched: bool,
) -> Result<(Deciding, OfferSlot, Option<Manifest>)> {
    let first = reader.read_record(opener, FIRST_OFFER_WAIT).await?;
    let mut slot = slots.wait_take(peer, trusted).await.ok_or_else(|| {
        let message = "the receiver has too many offers from untrusted peers pending; try again";
        Error::refused(Status::Busy, message)
    })?;
    let deadline = tokio::time::Instant::now() + OFFER_DEADLINE;
    let (manifest, first) = if batched {
        let (typ, body) = first;
        if typ != RecordType::Manifest {
            return Err(match Deciding::unexpected(typ, &body) {
                e @ ProtoError::PeerAlert { .. } => e,
                _ => ProtoError::UnexpectedRecord {
                    expected: &[RecordType::Manifest],
                    got: typ,
                },
            }
            .into());
        }
        (Some(Manifest::decode(&body)?), None)
    } else {
        (None, Some(first))
    };
    let collecting = if batched {
        CollectingOffer::batch()
    } else {
        CollectingOffer::new()
    };
    let deciding = collect(reader, opener, collecting, first, deadline, &mut slot).await?;
    Ok((deciding, slot, manifest))
}

/// Reads the next batch of a version 4 transfer, after our Status for the
/// one before (consent is given: only the protocol's bounds apply, and the
/// deadlines).
pub(super) async fn read_batch<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    opener: &mut Opener,
) -> Result<Deciding> {
    let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT + OFFER_DEADLINE;
    let mut consented = OfferSlot { stranger: None };
    collect(
        reader,
        opener,
        CollectingOffer::batch(),
        None,
        deadline,
        &mut consented,
    )
    .await
}

/// Collects Offer records (`first`, if read already, then more) until the
/// offer is complete, by `deadline`, within `slot`'s budget.
async fn collect<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    opener: &mut Opener,
    mut collecting: CollectingOffer,
    first: Option<(RecordType, Vec<u8>)>,
    deadline: tokio::time::Instant,
    slot: &mut OfferSlot,
) -> Result<Deciding> {
    let mut next = first;
    loop {
        let (typ, body) = match next.take() {
            Some(r) => r,
            None => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, reader.read_record(opener, IDLE_TIMEOUT)).await {
                    Ok(r) => r?,
                    Err(_) => return Err(Error::Timeout("the offer did not arrive in time")),
                }
            }
        };
        match collecting.handle(typ, &body)? {
            OfferStep::More(c) => {
                slot.hold(c.path_bytes() + c.entries_received() * ENTRY_OVERHEAD)?;
                collecting = c;
            }
            OfferStep::Complete(deciding) => {
                let entries = deciding.entries();
                let paths: usize = entries.iter().map(|e| e.path.len()).sum();
                slot.hold(paths + entries.len() * ENTRY_OVERHEAD)?;
                return Ok(deciding);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn strangers_get_a_couple_of_slots_each_and_trusted_peers_always_one() {
        let slots = OfferSlots::default();
        let a1 = slots.take([1; 16], false).unwrap();
        let _a2 = slots.take([1; 16], false).unwrap();
        assert!(slots.take([1; 16], false).is_none(), "per peer");
        let others: Vec<OfferSlot> = (2..20u8)
            .filter_map(|i| slots.take([i; 16], false))
            .collect();
        assert_eq!(others.len(), MAX_STRANGER_OFFERS - 2);
        assert!(slots.take([99; 16], true).is_some(), "trusted bypass");
        drop(a1);
        assert!(slots.take([1; 16], false).is_some());
    }

    #[test]
    fn untrusted_offers_are_bounded_in_memory_alone_and_together() {
        let slots = OfferSlots::default();
        let mut one = slots.take([1; 16], false).unwrap();
        assert!(one.hold(1 << 20).is_ok());
        assert!(matches!(
            one.hold(PRE_CONSENT_BYTES + 1),
            Err(Error::Transfer(crate::error::TransferError::Refused {
                status: Status::TooLarge,
                ..
            }))
        ));
        let mut held: Vec<OfferSlot> = Vec::new();
        let mut refused = 0;
        for i in 2..20u8 {
            if let Some(mut s) = slots.take([i; 16], false) {
                match s.hold(PRE_CONSENT_BYTES) {
                    Ok(()) => held.push(s),
                    Err(_) => refused += 1,
                }
            }
        }
        let total: usize = held.len() * PRE_CONSENT_BYTES + (1 << 20);
        assert!(total <= STRANGER_OFFER_BYTES, "{total}");
        assert!(refused > 0);
        let mut trusted = slots.take([9; 16], true).unwrap();
        assert!(trusted.hold(16 << 20).is_ok());
    }
}
