// The trust view: the peers this node has met, their trust state and the
// actions on it (trust, untrust, block, forget), and the form that adds a
// peer by address (`localstream add`).

import { model, upsertPeer, displayName } from './model.js';
import { el, setText, reconcile, icon, api, toast, toastError, formatAgo } from './util.js';

let onPeersChanged = () => {};

const CHANGED_TEXT =
  "This node's key changed since you pinned it. If you did not reinstall it, someone may be " +
  'impersonating it. Compare fingerprints, then Forget it to accept the new key.';

/** Peers this node has met (pinned, or with a trust state of their own). */
function storedPeers() {
  return [...model.peers.values()]
    .filter((p) => p.trust !== 'new' || !p.first_contact)
    .sort((a, b) => {
      // Key changes first: they need attention.
      const ca = a.trust === 'changed' ? 0 : 1;
      const cb = b.trust === 'changed' ? 0 : 1;
      if (ca !== cb) return ca - cb;
      return displayName(a).localeCompare(displayName(b), undefined, { sensitivity: 'base' });
    });
}

async function act(peer, action) {
  const name = peer.name;
  if (action === 'forget' && !window.confirm(
    `Forget ${name}? Its pinned key, trust state and history are dropped here; ` +
    'the next accepted transfer pins its key again.')) return;
  if (action === 'block' && !window.confirm(
    `Block ${name}? Everything it sends is refused, and sending to it is refused too.`)) return;
  try {
    const answer = await api('POST', `/api/peers/${encodeURIComponent(peer.id)}/${action}`);
    if (answer && answer.peer) {
      // A forgotten peer that is not on the network either has nothing left to show.
      if (answer.peer.first_contact && !answer.peer.online) model.peers.delete(String(answer.peer.id));
      else upsertPeer(answer.peer);
    }
    const done = { trust: 'trusted', untrust: 'no longer trusted', block: 'blocked', forget: 'forgotten' }[action];
    toast(`${name} ${done}`);
    onPeersChanged();
  } catch (error) {
    toastError(error);
  }
}

function createRow(peer) {
  const id = String(peer.id);
  const button = (cls, label) => el('button', {
    type: 'button',
    class: `btn small ${cls}`,
    text: label,
    onclick: () => {
      const current = model.peers.get(id);
      if (current) act(current, cls.replace('do-', ''));
    },
  });
  return el(
    'div',
    { class: 'trust-row card', data: { peerId: id } },
    el(
      'div',
      { class: 'trust-main' },
      el('div', { class: 'trust-who' },
        el('strong', { class: 'trust-name' }), el('span', { class: 'trust-id mono muted' })),
      el('div', { class: 'trust-meta mono muted' }),
    ),
    el('span', { class: 'badge trust-state' }),
    el('div', { class: 'trust-actions' },
      button('do-trust', 'Trust'),
      button('do-untrust', 'Untrust'),
      button('do-block', 'Block'),
      button('do-forget', 'Forget')),
    el('div', { class: 'trust-changed-slot' }),
  );
}

function updateRow(row, peer) {
  if (row._peer === peer) return;
  row._peer = peer;
  row.classList.toggle('changed', peer.trust === 'changed');
  setText(row.querySelector('.trust-name'), peer.alias && peer.alias !== peer.name ? `${peer.alias} (${peer.name})` : peer.name);
  setText(row.querySelector('.trust-id'), peer.short_id);
  const meta = [
    peer.fingerprint ? `fingerprint ${peer.fingerprint}` : null,
    peer.addresses && peer.addresses.length ? peer.addresses.join(', ') : null,
    peer.online ? 'online' : peer.last_seen ? `seen ${formatAgo(peer.last_seen * 1000)}` : null,
  ].filter(Boolean);
  setText(row.querySelector('.trust-meta'), meta.join(' · '));

  const state = row.querySelector('.trust-state');
  state.className = `badge trust-state trust-${peer.trust}`;
  setText(state, peer.trust === 'changed' ? 'CHANGED' : peer.trust);

  // Every action stays in place; the ones that would change nothing are off.
  row.querySelector('.do-trust').disabled = peer.trust === 'trusted' || peer.trust === 'changed';
  const untrust = row.querySelector('.do-untrust');
  untrust.disabled = !(peer.trust === 'trusted' || peer.trust === 'blocked');
  setText(untrust, peer.trust === 'blocked' ? 'Unblock' : 'Untrust');
  row.querySelector('.do-block').disabled = peer.trust === 'blocked';

  const slot = row.querySelector('.trust-changed-slot');
  slot.replaceChildren();
  if (peer.trust === 'changed') {
    slot.append(el('p', { class: 'trust-changed-note', role: 'alert' }, icon('alert'), el('span', { text: CHANGED_TEXT })));
  }
}

export function renderTrust() {
  const rows = storedPeers();
  reconcile(document.getElementById('trust-list'), rows, (p) => p.id, createRow, updateRow);
  document.getElementById('trust-empty').hidden = rows.length > 0;
}

export function setupTrust(peersChanged) {
  onPeersChanged = peersChanged;
  const form = document.getElementById('add-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = form.elements.name.value.trim();
    const address = form.elements.address.value.trim();
    if (!name || !address) {
      toast('Give the peer a name and an address', 'error');
      return;
    }
    const submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    try {
      await api('POST', '/api/add', { name, address });
      toast(`Connecting to ${address}: compare the code when asked`);
      form.reset();
    } catch (error) {
      toastError(error);
    } finally {
      submit.disabled = false;
    }
  });
}
