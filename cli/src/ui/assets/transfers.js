// The transfers view: one card per transfer, newest first, with progress,
// speed and time left (measured here from successive `moved` values), the
// files done so far and a cancel button; plus the running count on the nav.

import { model, sortedTransfers, activeTransferCount, isFinal } from './model.js';
import {
  el, setText, reconcile, icon, api, toast, toastError,
  formatSize, formatRate, formatPercent, formatDuration, formatWhen, filesAndFolders,
} from './util.js';

// ---------------------------------------------------------------- speed

// Per transfer: recent [time ms, moved] samples (a few seconds' worth).
const samples = new Map();
const WINDOW_MS = 5000;

function sample(transfer) {
  const key = String(transfer.id);
  let points = samples.get(key);
  const now = performance.now();
  const last = points && points[points.length - 1];
  if (!points || (last && transfer.moved < last[1])) {
    // New, or restarted from a lower count: start measuring again.
    points = [];
    samples.set(key, points);
  }
  if (!points.length || transfer.moved !== points[points.length - 1][1]) points.push([now, transfer.moved]);
  while (points.length > 2 && points[1][0] < now - WINDOW_MS) points.shift();
}

/**
 * Bytes per second over the last few seconds, or null before there are two
 * samples. When updates stop, "now" stands in for the last sample so that a
 * stalled transfer's speed falls towards zero instead of freezing.
 */
function rateOf(transfer) {
  const points = samples.get(String(transfer.id));
  if (!points || points.length < 2) return null;
  const [t0, m0] = points[0];
  const [t1, m1] = points[points.length - 1];
  const now = performance.now();
  const end = now - t1 > 1000 ? now : t1;
  const seconds = (end - t0) / 1000;
  if (seconds < 0.3) return null;
  return (m1 - m0) / seconds;
}

// ---------------------------------------------------------------- cards

function who(transfer) {
  if (transfer.peer) return transfer.peer.name;
  return transfer.target || 'unknown peer';
}

/** A line saying what is going on, in words. */
function hint(t) {
  const name = who(t);
  const sending = t.side === 'send';
  if (t.counting && !t.ended) {
    return `counting what to send: ${t.counting.entries} files and folders, ${formatSize(t.counting.bytes)} so far`;
  }
  switch (t.state) {
    case 'connecting': return `connecting to ${name}…`;
    case 'confirming': return 'compare the verification code with the other screen';
    case 'offered': return sending ? `waiting for ${name} to accept…` : 'offered';
    case 'asking': return 'waiting for your answer';
    case 'running': return sending ? `sending to ${name}` : `receiving from ${name}`;
    case 'done': {
      const from = t.accepted || t.started;
  const took = t.ended && from ? ` in ${formatDuration((t.ended - from) / 1000)}` : '';
      return `${sending ? 'sent' : 'received'} ${filesAndFolders(t.files, t.folders)}, ${formatSize(t.bytes)}${took}`;
    }
    case 'refused': return sending ? `${name} refused` : 'refused';
    case 'cancelled': return 'cancelled';
    case 'failed': return 'failed';
    default: return t.state;
  }
}

function createCard(t) {
  return el(
    'article',
    { class: 'transfer card', data: { transferId: String(t.id) } },
    el(
      'div',
      { class: 'transfer-head' },
      el('span', { class: 'transfer-dir' }),
      el(
        'div',
        { class: 'transfer-title' },
        el('div', {}, el('span', { class: 'transfer-dir-text' }), ' ', el('strong', { class: 'transfer-peer' })),
        el('div', { class: 'transfer-hint muted' }),
      ),
      el('span', { class: 'badge transfer-state' }),
    ),
    el(
      'div',
      { class: 'transfer-progress' },
      el('progress', { class: 'transfer-total', max: '1', value: '0' }),
      el('span', { class: 'transfer-percent' }),
    ),
    el(
      'div',
      { class: 'transfer-stats muted' },
      el('span', { class: 'transfer-amount' }),
      el('span', { class: 'transfer-rate' }),
      el('span', { class: 'transfer-eta' }),
      el('span', { class: 'transfer-when' }),
    ),
    el('div', { class: 'transfer-current-slot' }),
    el('div', { class: 'transfer-extra' }),
    el('ul', { class: 'transfer-notices' }),
    el('ul', { class: 'transfer-files' }),
    el('div', { class: 'transfer-actions' }),
  );
}

function updateCard(card, t) {
  const notices = model.notices.get(String(t.id)) || [];
  if (card._transfer !== t || card._notices !== notices.length) {
    card._transfer = t;
    card._notices = notices.length;
    fillCard(card, t, notices);
  }
  updateSpeed(card, t);
}

function fillCard(card, t, notices) {
  const final = isFinal(t);
  card.className = `transfer card side-${t.side} state-${t.state}`;

  const dir = card.querySelector('.transfer-dir');
  dir.replaceChildren(icon(t.side === 'send' ? 'up' : 'down'));
  dir.setAttribute('aria-label', t.side === 'send' ? 'sending' : 'receiving');
  setText(card.querySelector('.transfer-dir-text'), t.side === 'send' ? 'To' : 'From');
  const peer = card.querySelector('.transfer-peer');
  setText(peer, who(t));
  peer.title = t.peer ? `${t.peer.short_id} · ${t.peer.fingerprint || ''}` : '';
  setText(card.querySelector('.transfer-hint'), hint(t));
  setText(card.querySelector('.transfer-state'), t.state);

  // Total progress: moved of total (the bytes this transfer has to move).
  const bar = card.querySelector('.transfer-total');
  const total = t.total || 0;
  bar.max = total || 1;
  bar.value = t.state === 'done' ? bar.max : Math.min(t.moved || 0, total);
  setText(card.querySelector('.transfer-percent'), t.state === 'done' ? '100 %' : formatPercent(t.moved || 0, total));
  setText(
    card.querySelector('.transfer-amount'),
    `${formatSize(t.moved || 0)} of ${formatSize(total)} · ${filesAndFolders(t.files, t.folders)}`,
  );
  setText(card.querySelector('.transfer-when'), formatWhen(t.started));

  // The file moving now, with its own bar.
  const slot = card.querySelector('.transfer-current-slot');
  if (t.current && !final) {
    let current = slot.firstChild;
    if (!current) {
      current = el(
        'div',
        { class: 'transfer-current' },
        el('div', { class: 'transfer-current-line' },
          icon('file'), el('span', { class: 'transfer-current-name' }), el('span', { class: 'transfer-current-size muted' })),
        el('progress', { class: 'transfer-file', max: '1', value: '0' }),
      );
      slot.append(current);
    }
    const name = current.querySelector('.transfer-current-name');
    setText(name, t.current.name);
    name.title = t.current.name;
    setText(current.querySelector('.transfer-current-size'),
      `${formatSize(t.current.bytes)} of ${formatSize(t.current.size)}`);
    const fileBar = current.querySelector('.transfer-file');
    fileBar.max = t.current.size || 1;
    fileBar.value = Math.min(t.current.bytes || 0, fileBar.max);
  } else slot.replaceChildren();

  // Lines that exist only when they say something.
  const extra = card.querySelector('.transfer-extra');
  extra.replaceChildren(...[
    t.resumed > 0 ? el('div', { class: 'transfer-resumed', text: `resumed ${formatSize(t.resumed)} already here` }) : null,
    t.code ? el('div', { class: 'transfer-code-line' },
      el('span', { class: 'muted', text: 'Verification code ' }), el('span', { class: 'transfer-code mono', text: t.code })) : null,
    t.message ? el('div', { class: 'transfer-message', role: t.state === 'failed' ? 'alert' : null, text: t.message }) : null,
  ].filter(Boolean));

  card.querySelector('.transfer-notices').replaceChildren(...notices.map((text) => el('li', { text })));

  // Finished files only grow: append the new ones instead of rebuilding.
  const list = card.querySelector('.transfer-files');
  const files = t.done_files || [];
  if (list.children.length > files.length) list.replaceChildren();
  for (let i = list.children.length; i < files.length; i += 1) list.append(fileItem(t, files[i]));

  const actions = card.querySelector('.transfer-actions');
  let cancel = actions.querySelector('.transfer-cancel');
  if (t.cancellable && !cancel) {
    cancel = el('button', {
      type: 'button',
      class: 'btn danger-ghost small transfer-cancel',
      text: 'Cancel',
      onclick: () => cancelTransfer(t.id, cancel),
    });
    actions.append(cancel);
  } else if (!t.cancellable && cancel) cancel.remove();
}

function fileItem(t, file) {
  const open = t.side === 'receive' && file.path
    ? el('button', {
      type: 'button',
      class: 'link transfer-open',
      text: 'Open folder',
      title: file.path,
      onclick: () => api('POST', '/api/open', { path: file.path }).catch(toastError),
    })
    : null;
  return el(
    'li',
    {},
    icon('check', 'ok'),
    el('span', { class: 'transfer-file-name', text: file.name, title: file.name }),
    el('span', { class: 'transfer-file-size muted', text: formatSize(file.size) }),
    open,
  );
}

function updateSpeed(card, t) {
  const rateBox = card.querySelector('.transfer-rate');
  const etaBox = card.querySelector('.transfer-eta');
  if (t.state === 'running') {
    const rate = rateOf(t);
    setText(rateBox, rate === null ? '' : formatRate(rate));
    const left = (t.total || 0) - (t.moved || 0);
    let eta = '';
    if (rate !== null && left > 0) eta = rate > 0 ? `${formatDuration(left / rate)} left` : 'stalled';
    setText(etaBox, eta);
  } else if (t.state === 'done' && t.ended && (t.accepted || t.started) && t.ended > (t.accepted || t.started)) {
    // Average over the whole transfer.
    setText(rateBox, `${formatRate(((t.moved || 0) - (t.resumed || 0)) / ((t.ended - (t.accepted || t.started)) / 1000))} average`);
    setText(etaBox, '');
  } else {
    setText(rateBox, '');
    setText(etaBox, '');
  }
}

async function cancelTransfer(id, button) {
  button.disabled = true;
  try {
    await api('POST', `/api/transfers/${encodeURIComponent(id)}/cancel`);
    toast('Cancelling…');
  } catch (error) {
    button.disabled = false;
    toastError(error);
  }
}

// ---------------------------------------------------------------- the view

/** Records a speed sample; call for every `transfer` message and state. */
export function noteTransfer(t) {
  if (t.state === 'running') sample(t);
  else if (isFinal(t)) samples.delete(String(t.id));
}

export function renderTransfers() {
  const list = sortedTransfers();
  reconcile(document.getElementById('transfer-list'), list, (t) => t.id, createCard, updateCard);
  document.getElementById('transfers-empty').hidden = list.length > 0;
  const badge = document.getElementById('transfers-badge');
  const active = activeTransferCount();
  setText(badge, active);
  badge.hidden = active === 0;
  badge.setAttribute('aria-label', `${active} running`);
}

export function setupTransfers() {
  // Speed and time left move on even between messages (a stalled transfer).
  setInterval(() => {
    for (const card of document.querySelectorAll('#transfer-list .transfer.state-running')) {
      if (card._transfer) updateSpeed(card, card._transfer);
    }
  }, 1000);
}
