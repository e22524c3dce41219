// The in-memory picture of the node, built from the event stream: a `state`
// message replaces it whole, the other messages change one piece. Views read
// it; only app.js (and the answers of a few requests) write to it.

export const model = {
  node: null,
  peers: new Map(), // id -> Peer
  offers: new Map(), // offer_id -> Offer
  confirms: new Map(), // question -> Confirm
  transfers: new Map(), // id -> Transfer
  banners: new Map(), // id -> Banner
  chosen: [], // paths chosen by `localstream ui --send`
  notices: new Map(), // transfer id -> [text] (from `notice` messages; this page only)
};

const FINAL = new Set(['done', 'failed', 'refused', 'cancelled']);

/** True once a transfer can no longer change. */
export function isFinal(transfer) {
  return FINAL.has(transfer.state);
}

function byKey(list, key) {
  const map = new Map();
  for (const item of list || []) map.set(String(item[key]), item);
  return map;
}

/** Applies a `state` message: the whole picture. */
export function replaceState(state) {
  model.node = state.node || null;
  model.peers = byKey(state.peers, 'id');
  model.offers = byKey(state.offers, 'offer_id');
  model.confirms = byKey(state.confirms, 'question');
  model.transfers = byKey(state.transfers, 'id');
  model.banners = byKey(state.banners, 'id');
  model.chosen = Array.isArray(state.chosen) ? state.chosen : [];
}

export function upsertPeer(peer) {
  model.peers.set(String(peer.id), peer);
}

/** Returns the previous version of the transfer (undefined when new). */
export function upsertTransfer(transfer) {
  const key = String(transfer.id);
  const before = model.transfers.get(key);
  model.transfers.set(key, transfer);
  return before;
}

export function addNotice(transferId, text) {
  const key = String(transferId);
  const list = model.notices.get(key) || [];
  list.push(text);
  // A long transfer may skip many files: keep the last few lines only.
  if (list.length > 20) list.splice(0, list.length - 20);
  model.notices.set(key, list);
}

/** Peers for the peers view: online first, then by name. */
export function sortedPeers() {
  return [...model.peers.values()].sort((a, b) => {
    if (a.online !== b.online) return a.online ? -1 : 1;
    return displayName(a).localeCompare(displayName(b), undefined, { sensitivity: 'base' });
  });
}

/** The name people gave a peer here, else the name it announces. */
export function displayName(peer) {
  return peer.alias || peer.name || peer.short_id || String(peer.id);
}

/** Oldest first (offers carry the time they arrived). */
export function sortedOffers() {
  return [...model.offers.values()].sort((a, b) => (a.received || 0) - (b.received || 0));
}

/** Newest first. */
export function sortedTransfers() {
  return [...model.transfers.values()].sort((a, b) => (b.started || 0) - (a.started || 0));
}

/** Transfers still moving (or about to): the nav badge. */
export function activeTransferCount() {
  let n = 0;
  for (const t of model.transfers.values()) if (!isFinal(t)) n += 1;
  return n;
}
