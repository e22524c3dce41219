// LocalStream's web UI: the entry module. It follows the node's event stream
// (GET /api/events: a `state` message, then changes), keeps the model in
// model.js up to date, and asks each view to redraw what changed. The views
// live in their own modules; this one also draws the header and banners and
// switches between views.

import {
  model, replaceState, upsertPeer, upsertTransfer, addNotice, isFinal,
} from './model.js';
import { el, setText, reconcile, icon, toast, formatAgo, peerLabel, filesAndFolders, formatSize } from './util.js';
import { renderPeers, setupPeers } from './peers.js';
import {
  renderConfirm, renderOffer, confirmClosed, offerClosed, notifyOffer, notifyConfirm, setupDialogs,
} from './dialogs.js';
import { renderTransfers, noteTransfer, setupTransfers } from './transfers.js';
import { loadHistory, setupHistory } from './history.js';
import { renderTrust, setupTrust } from './trust.js';
import { loadSettings, renderNodeDetails, setupSettings } from './settings.js';

// ---------------------------------------------------------------- views

const VIEWS = ['peers', 'transfers', 'history', 'trust', 'settings'];
let currentView = null;

function showView(name) {
  if (!VIEWS.includes(name)) name = 'peers';
  for (const view of VIEWS) {
    document.getElementById(`view-${view}`).hidden = view !== name;
    const link = document.querySelector(`nav a[data-view="${view}"]`);
    if (view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (name === currentView) return;
  currentView = name;
  // Views whose data is not in the event stream fetch it when they open.
  if (name === 'history') loadHistory();
  if (name === 'settings') loadSettings();
}

// ---------------------------------------------------------------- header

function renderHeader() {
  const node = model.node;
  if (!node) return;
  setText(document.getElementById('node-name'), node.name);
  const id = document.getElementById('node-id');
  setText(id, node.short_id);
  id.title = node.id;
  setText(document.getElementById('node-fingerprint'), node.fingerprint);
  const dir = document.getElementById('node-dir');
  setText(dir, node.dir);
  dir.title = node.dir;
  renderNodeDetails();
  updateTitle();
}

/** The tab title counts the questions waiting for an answer. */
function updateTitle() {
  const waiting = model.offers.size + model.confirms.size;
  const name = model.node ? ` · ${model.node.name}` : '';
  document.title = `${waiting ? `(${waiting}) ` : ''}LocalStream${name}`;
}

// ---------------------------------------------------------------- banners

const DISMISSED_KEY = 'localstream-dismissed-banners';
const dismissed = new Set(readDismissed());

function readDismissed() {
  try {
    return JSON.parse(sessionStorage.getItem(DISMISSED_KEY) || '[]');
  } catch {
    return [];
  }
}

function dismiss(id) {
  dismissed.add(String(id));
  try {
    sessionStorage.setItem(DISMISSED_KEY, JSON.stringify([...dismissed]));
  } catch {
    // Storage off: dismissals last until the page reloads.
  }
  renderBanners();
}

const LEVEL_ORDER = { danger: 0, warning: 1, info: 2 };

function createBanner(banner) {
  return el(
    'div',
    { class: 'banner' },
    el('span', { class: 'banner-icon' }),
    el('div', { class: 'banner-body' },
      el('div', { class: 'banner-title' }),
      el('div', { class: 'banner-text' }),
      el('div', { class: 'banner-meta' })),
    el('button', {
      type: 'button',
      class: 'banner-close',
      'aria-label': 'Dismiss',
      title: 'Dismiss',
      onclick: () => dismiss(banner.id),
    }, icon('x')),
  );
}

function updateBanner(node, banner) {
  const level = LEVEL_ORDER[banner.level] === undefined ? 'info' : banner.level;
  node.className = `banner ${level}`;
  node.setAttribute('role', level === 'info' ? 'status' : 'alert');
  node.querySelector('.banner-icon').replaceChildren(icon(level === 'info' ? 'info' : 'alert'));
  setText(node.querySelector('.banner-title'), banner.title);
  setText(node.querySelector('.banner-text'), banner.text);
  const meta = [banner.peer ? peerLabel(banner.peer) : null, banner.time ? formatAgo(banner.time) : null];
  setText(node.querySelector('.banner-meta'), meta.filter(Boolean).join(' · '));
}

function renderBanners() {
  const list = [...model.banners.values()]
    .filter((b) => !dismissed.has(String(b.id)))
    .sort((a, b) => (LEVEL_ORDER[a.level] ?? 2) - (LEVEL_ORDER[b.level] ?? 2) || (b.time || 0) - (a.time || 0));
  reconcile(document.getElementById('banners'), list, (b) => b.id, createBanner, updateBanner);
}

// ---------------------------------------------------------------- the event stream

function renderAll() {
  renderHeader();
  renderBanners();
  renderPeers();
  renderTrust();
  renderTransfers();
  renderConfirm();
  renderOffer();
}

function peersChanged() {
  renderPeers();
  renderTrust();
}

/** A transfer reached done/failed/refused/cancelled while this page watched. */
function transferEnded(t) {
  const name = t.peer ? t.peer.name : t.target || 'the peer';
  if (t.state === 'done') {
    const what = `${filesAndFolders(t.files, t.folders)}, ${formatSize(t.bytes)}`;
    toast(t.side === 'send' ? `Sent ${what} to ${name}` : `Received ${what} from ${name}`);
  } else if (t.state === 'failed') {
    toast(`Transfer with ${name} failed${t.message ? `: ${t.message}` : ''}`, 'error');
  } else if (t.state === 'refused') {
    toast(t.message || `${name} refused the transfer`, 'error');
  }
  if (currentView === 'history') loadHistory();
}

function handle(msg) {
  switch (msg.kind) {
    case 'state':
      replaceState(msg);
      for (const t of model.transfers.values()) noteTransfer(t);
      setConnection('ok');
      renderAll();
      break;
    case 'peer':
      upsertPeer(msg.peer);
      peersChanged();
      break;
    case 'peer_gone':
      model.peers.delete(String(msg.id));
      peersChanged();
      break;
    case 'offer':
      model.offers.set(String(msg.offer.offer_id), msg.offer);
      renderOffer();
      notifyOffer(msg.offer);
      updateTitle();
      break;
    case 'offer_closed':
      offerClosed(msg.offer_id, msg.reason);
      updateTitle();
      break;
    case 'confirm':
      model.confirms.set(String(msg.confirm.question), msg.confirm);
      renderConfirm();
      notifyConfirm(msg.confirm);
      updateTitle();
      break;
    case 'confirm_closed':
      confirmClosed(msg.question, msg.reason);
      updateTitle();
      break;
    case 'transfer': {
      const before = upsertTransfer(msg.transfer);
      noteTransfer(msg.transfer);
      renderTransfers();
      if (before && !isFinal(before) && isFinal(msg.transfer)) transferEnded(msg.transfer);
      break;
    }
    case 'banner':
      model.banners.set(String(msg.banner.id), msg.banner);
      renderBanners();
      break;
    case 'chosen':
      model.chosen = Array.isArray(msg.chosen) ? msg.chosen : [];
      renderPeers();
      break;
    case 'notice':
      if (msg.transfer !== null && msg.transfer !== undefined) {
        addNotice(msg.transfer, msg.text);
        renderTransfers();
      }
      toast(msg.text);
      break;
    default:
      // A newer node may say more than this page knows: ignore it.
      break;
  }
}

// The bar at the top while the stream is down. States: ok, lost, signed-out.
function setConnection(status) {
  const bar = document.getElementById('connection');
  bar.hidden = status === 'ok';
  document.body.classList.toggle('disconnected', status !== 'ok');
  if (status === 'lost') setText(bar, 'Disconnected, reconnecting…');
  if (status === 'signed-out') {
    setText(bar, 'This page is not signed in any more (did the node restart?). Open the link that ' +
      '`localstream ui` printed (it carries a one-time key), or run `localstream ui` again.');
  }
}

let source = null;

function connect() {
  source = new EventSource('/api/events');
  source.addEventListener('message', (e) => {
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch {
      console.warn('LocalStream: a message that is not JSON', e.data);
      return;
    }
    try {
      handle(msg);
    } catch (error) {
      console.error('LocalStream: could not apply', msg.kind, error);
    }
  });
  source.addEventListener('error', () => {
    setConnection('lost');
    // EventSource retries by itself after a network error, but gives up on
    // an HTTP error (a 403 once the node restarted with a new key): then
    // find out why and try again a little later.
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      fetch('/api/ping', { credentials: 'same-origin' })
        .then((r) => setConnection(r.status === 401 || r.status === 403 ? 'signed-out' : 'lost'))
        .catch(() => setConnection('lost'));
      setTimeout(connect, 5000);
    }
  });
}

// ---------------------------------------------------------------- start

function start() {
  setupDialogs();
  setupPeers();
  setupTransfers();
  setupHistory();
  setupTrust(peersChanged);
  setupSettings();
  window.addEventListener('hashchange', () => showView(location.hash.slice(1)));
  showView(location.hash.slice(1));
  // Relative times ("seen 5 min ago") age: redraw them now and then.
  setInterval(() => {
    for (const card of document.querySelectorAll('.peer, .trust-row')) card._peer = null;
    peersChanged();
    for (const b of document.querySelectorAll('#banners > .banner')) {
      const banner = model.banners.get(b.dataset.key);
      if (banner) updateBanner(b, banner);
    }
  }, 60000);
  connect();
}

start();
