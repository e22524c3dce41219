// The peers view: one card per peer (a drop zone plus file and folder
// pickers), the bar listing paths chosen by `localstream ui --send`, and the
// "send to an address" box. Sending from the browser stages the files on the
// node first (POST /api/uploads, one PUT per file), then asks it to send.

import { model, sortedPeers } from './model.js';
import {
  el, setText, reconcile, icon, api, readAnswer, toast, toastError,
  formatSize, formatAgo, plural, hueOf,
} from './util.js';

// Uploads in progress, by target key (a peer id, or SEND_TO for the box).
const uploads = new Map();
const SEND_TO = '#send-to';

// ---------------------------------------------------------------- collecting files

/** Files picked with an <input type=file>: [{file, path}]. */
function filesFromInput(input) {
  return [...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}

/**
 * Files dropped on a card, folders walked recursively: [{file, path}] with
 * relative paths like "photos/2024/a.jpg". The entries must be taken from the
 * DataTransfer synchronously (it is emptied once the drop handler returns).
 */
function entriesFromDrop(dataTransfer) {
  const entries = [];
  const loose = [];
  for (const item of dataTransfer.items || []) {
    if (item.kind !== 'file') continue;
    const entry = typeof item.webkitGetAsEntry === 'function' ? item.webkitGetAsEntry() : null;
    if (entry) entries.push(entry);
    else {
      const file = item.getAsFile();
      if (file) loose.push({ file, path: file.name });
    }
  }
  return { entries, loose };
}

async function walkEntries({ entries, loose }) {
  const out = [...loose];
  for (const entry of entries) await walk(entry, out);
  return out;
}

async function walk(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\/+/, '') || file.name });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    // readEntries answers in batches (about 100 at a time) until an empty one.
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await walk(child, out);
    }
  }
}

// ---------------------------------------------------------------- sending

/**
 * Stages `items` on the node, one file at a time (each File is the fetch
 * body, so the browser streams it from disk), then sends the staging folder
 * to `target` (a peer id or an address). Progress lands in `uploads`.
 */
async function uploadAndSend(key, target, label, items) {
  if (uploads.has(key)) {
    toast(`Still uploading to ${label}…`);
    return;
  }
  if (!items.length) {
    toast('Nothing to send: the folders are empty');
    return;
  }
  const state = {
    count: items.length,
    done: 0,
    bytes: items.reduce((sum, item) => sum + item.file.size, 0),
    bytesDone: 0,
    sending: false,
    controller: new AbortController(),
  };
  uploads.set(key, state);
  refreshUpload(key);
  try {
    const { upload } = await api('POST', '/api/uploads');
    for (const item of items) {
      refreshUpload(key);
      let response;
      try {
        response = await fetch(
          `/api/uploads/${encodeURIComponent(upload)}?path=${encodeURIComponent(item.path)}`,
          {
            method: 'PUT',
            credentials: 'same-origin',
            headers: { 'Content-Type': 'application/octet-stream' },
            body: item.file,
            signal: state.controller.signal,
          },
        );
      } catch (error) {
        if (error.name === 'AbortError') throw error;
        throw new Error(`could not upload ${item.path} (was it moved or deleted?)`);
      }
      await readAnswer(response);
      state.done += 1;
      state.bytesDone += item.file.size;
    }
    state.sending = true;
    refreshUpload(key);
    await api('POST', '/api/send', { peer: target, upload });
    toast(`Sending ${plural(state.count, 'file')} (${formatSize(state.bytes)}) to ${label}`);
  } catch (error) {
    if (error.name === 'AbortError') toast('Upload cancelled');
    else toastError(error);
  } finally {
    uploads.delete(key);
    refreshUpload(key);
  }
}

async function sendChosen(target, label) {
  try {
    await api('POST', '/api/send', { peer: target, chosen: true });
    toast(`Sending ${plural(model.chosen.length, 'chosen item')} to ${label}`);
  } catch (error) {
    toastError(error);
  }
}

/** Redraws the upload line of one target (a card, or the address box). */
function refreshUpload(key) {
  let box;
  if (key === SEND_TO) box = document.getElementById('send-to-status');
  else {
    const card = document.querySelector(`.peer[data-peer-id="${CSS.escape(key)}"]`);
    box = card && card.querySelector('.peer-upload');
  }
  if (box) renderUpload(box, uploads.get(key));
}

function renderUpload(box, state) {
  box._upload = state; // for the Cancel button
  box.hidden = !state;
  if (!state) return;
  if (!box.firstChild) {
    box.append(
      el('span', { class: 'upload-text' }),
      el('progress', { class: 'upload-progress', max: '1', value: '0' }),
      el('button', {
        type: 'button',
        class: 'btn small ghost upload-cancel',
        text: 'Cancel',
        onclick: () => box._upload && box._upload.controller.abort(),
      }),
    );
  }
  const text = state.sending
    ? 'asking the node to send…'
    : `uploading ${state.done + 1} of ${plural(state.count, 'file')} to the node… ` +
      `${formatSize(state.bytesDone)} of ${formatSize(state.bytes)}`;
  setText(box.querySelector('.upload-text'), text);
  const bar = box.querySelector('.upload-progress');
  bar.value = state.bytes ? state.bytesDone / state.bytes : state.done / state.count;
  box.querySelector('.upload-cancel').disabled = state.sending;
}

// ---------------------------------------------------------------- cards

function trustText(trust) {
  return trust === 'changed' ? 'CHANGED' : trust;
}

/** Why this peer cannot be sent to, or null. */
function sendBlocked(peer) {
  if (peer.trust === 'blocked') return `${peer.name} is blocked: unblock it in Trust to send`;
  if (peer.trust === 'changed') return `${peer.name}'s key changed: see Trust before sending`;
  return null;
}

function createCard(peer) {
  const id = String(peer.id);
  const pick = el('input', { type: 'file', class: 'peer-pick visually-hidden', multiple: true });
  const pickFolder = el('input', {
    type: 'file', class: 'peer-pick-folder visually-hidden', webkitdirectory: true, multiple: true,
  });
  const card = el(
    'article',
    { class: 'peer card', data: { peerId: id } },
    el(
      'div',
      { class: 'peer-top' },
      el('div', { class: 'avatar', 'aria-hidden': 'true' }),
      el(
        'div',
        { class: 'peer-title' },
        el('div', { class: 'peer-name-line' }, el('h3', { class: 'peer-name' }), el('span', { class: 'peer-alias' })),
        el(
          'div',
          { class: 'peer-sub' },
          el('span', { class: 'status-dot', 'aria-hidden': 'true' }),
          el('span', { class: 'peer-status' }),
          el('span', { class: 'peer-id mono' }),
        ),
      ),
      el('span', { class: 'badge peer-trust' }),
    ),
    el('div', { class: 'peer-addresses mono' }),
    el('div', { class: 'peer-notes' }),
    el('div', { class: 'drop-hint' }, icon('upload'), el('span', { text: 'Drop files or folders here' })),
    el(
      'div',
      { class: 'peer-actions' },
      el('label', { class: 'btn' }, icon('file'), 'Files…', pick),
      el('label', { class: 'btn' }, icon('folder'), 'Folder…', pickFolder),
    ),
    el('div', { class: 'peer-upload upload-status', role: 'status', hidden: true }),
  );

  const current = () => model.peers.get(id);
  const send = (items) => {
    const peer = current();
    if (!peer) return;
    const reason = sendBlocked(peer);
    if (reason) toast(reason, 'error');
    else uploadAndSend(id, id, peer.name, items);
  };
  pick.addEventListener('change', () => {
    const items = filesFromInput(pick);
    pick.value = '';
    send(items);
  });
  pickFolder.addEventListener('change', () => {
    // Empty folders have no File to send; a folder input lists only files.
    const items = filesFromInput(pickFolder);
    pickFolder.value = '';
    send(items);
  });

  // Drag and drop: a counter, because dragenter/dragleave fire for children too.
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
  card.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth += 1;
    card.classList.add('drag-over');
  });
  card.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
  });
  card.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) card.classList.remove('drag-over');
  });
  card.addEventListener('drop', (e) => {
    e.preventDefault();
    e.stopPropagation();
    depth = 0;
    card.classList.remove('drag-over');
    const taken = entriesFromDrop(e.dataTransfer);
    walkEntries(taken).then(send, () => toast('Could not read the dropped folder', 'error'));
  });
  return card;
}

function updateCard(card, peer) {
  const chosen = model.chosen.length;
  // Nothing this card shows changed: skip the work.
  if (card._peer === peer && card._chosen === chosen) return;
  card._peer = peer;
  card._chosen = chosen;

  const avatar = card.querySelector('.avatar');
  avatar.className = `avatar hue-${hueOf(peer.id)}`;
  setText(avatar, [...(peer.alias || peer.name || '?')][0].toUpperCase());

  card.classList.toggle('offline', !peer.online);
  card.classList.toggle('changed', peer.trust === 'changed');
  card.classList.toggle('blocked', peer.trust === 'blocked');
  card.setAttribute('aria-label', `${peer.name}: drop files or folders to send`);

  setText(card.querySelector('.peer-name'), peer.name);
  const alias = card.querySelector('.peer-alias');
  setText(alias, peer.alias && peer.alias !== peer.name ? `“${peer.alias}”` : '');
  alias.hidden = !alias.textContent;

  let status = 'online';
  if (!peer.online) status = peer.last_seen ? `offline · seen ${formatAgo(peer.last_seen * 1000)}` : 'offline';
  setText(card.querySelector('.peer-status'), status);
  const idBox = card.querySelector('.peer-id');
  setText(idBox, peer.short_id);
  idBox.title = peer.fingerprint ? `id ${peer.id}\nfingerprint ${peer.fingerprint}` : `id ${peer.id}`;

  const badge = card.querySelector('.peer-trust');
  badge.className = `badge peer-trust trust-${peer.trust}`;
  setText(badge, trustText(peer.trust));

  const addresses = peer.addresses && peer.addresses.length ? peer.addresses.join(', ') : 'no address known';
  setText(card.querySelector('.peer-addresses'), addresses);

  // Markers that exist only when they apply.
  const notes = card.querySelector('.peer-notes');
  notes.replaceChildren();
  if (peer.first_contact) {
    notes.append(el('span', {
      class: 'peer-first-contact pill',
      text: 'First contact',
      title: 'Never met: you will compare a verification code before anything is sent',
    }));
  }
  if (peer.trust === 'changed') {
    notes.append(el('span', { class: 'peer-changed', text: 'Its key changed since you pinned it: see Trust' }));
  }

  const blocked = sendBlocked(peer);
  for (const input of card.querySelectorAll('input[type=file]')) {
    input.disabled = Boolean(blocked);
    input.parentElement.classList.toggle('disabled', Boolean(blocked));
  }
  setText(card.querySelector('.drop-hint span'), blocked ? 'Sending is off for this peer' : 'Drop files or folders here');

  const actions = card.querySelector('.peer-actions');
  let chosenButton = actions.querySelector('.peer-send-chosen');
  if (chosen && !chosenButton) {
    chosenButton = el('button', {
      type: 'button',
      class: 'btn primary peer-send-chosen',
      onclick: () => {
        const p = model.peers.get(String(peer.id));
        const reason = p && sendBlocked(p);
        if (reason) toast(reason, 'error');
        else if (p) sendChosen(String(p.id), p.name);
      },
    }, icon('send'), el('span'));
    actions.prepend(chosenButton);
  } else if (!chosen && chosenButton) {
    chosenButton.remove();
    chosenButton = null;
  }
  if (chosenButton) {
    setText(chosenButton.querySelector('span'), `Send chosen (${chosen})`);
    chosenButton.disabled = Boolean(blocked);
  }

  renderUpload(card.querySelector('.peer-upload'), uploads.get(String(peer.id)));
}

// ---------------------------------------------------------------- the view

function renderChosen() {
  const bar = document.getElementById('chosen');
  const paths = model.chosen;
  bar.hidden = paths.length === 0;
  if (!paths.length) return;
  setText(
    bar.querySelector('.chosen-text'),
    `Chosen: ${plural(paths.length, 'item')} — click Send chosen on a peer, or send to an address below`,
  );
  const list = bar.querySelector('.chosen-list');
  const shown = paths.slice(0, 6).map((p) => el('li', { class: 'mono', text: p }));
  if (paths.length > 6) shown.push(el('li', { class: 'more', text: `and ${paths.length - 6} more` }));
  list.replaceChildren(...shown);
}

export function renderPeers() {
  renderChosen();
  const peers = sortedPeers();
  reconcile(document.getElementById('peer-list'), peers, (p) => p.id, createCard, updateCard);
  document.getElementById('peers-empty').hidden = peers.length > 0;
  setText(document.getElementById('send-to-go'), model.chosen.length ? 'Send chosen' : 'Choose files…');
}

export function setupPeers() {
  const form = document.getElementById('send-to-form');
  const input = document.getElementById('send-to');
  const pick = document.getElementById('send-to-pick');
  let target = '';

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    target = input.value.trim();
    if (!target) {
      toast('Type an address first, e.g. 192.168.1.20 or 192.168.1.20:47470', 'error');
      input.focus();
      return;
    }
    if (model.chosen.length) sendChosen(target, target);
    else pick.click(); // still inside the user's click or Enter: the picker may open
  });
  pick.addEventListener('change', () => {
    const items = filesFromInput(pick);
    pick.value = '';
    if (items.length) uploadAndSend(SEND_TO, target, target, items);
  });

  // A file dropped anywhere but on a card must not make the browser open it.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => {
    e.preventDefault();
    if (e.dataTransfer && [...e.dataTransfer.types].includes('Files')) {
      toast('Drop files on a peer to send them to it');
    }
  });
}
