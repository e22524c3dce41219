// The two questions the node asks a person: "do the codes match?" before a
// first contact (confirm dialog) and "accept these files?" for an incoming
// offer (offer dialog), plus browser notifications while the tab is hidden.

import { model, sortedOffers } from './model.js';
import { el, setText, api, toast, toastError, formatSize, filesAndFolders, peerLabel } from './util.js';

const $ = (selector, root = document) => root.querySelector(selector);

// What each dialog currently shows (a question id / an offer id), or null.
let shownConfirm = null;
let shownOffer = null;

// ---------------------------------------------------------------- confirm

function fillConfirm(dialog, confirm) {
  setText($('.confirm-peer', dialog), peerLabel(confirm.peer));
  const fp = confirm.peer && confirm.peer.fingerprint;
  setText($('.confirm-fingerprint', dialog), fp ? `fingerprint ${fp}` : '');
  setText($('.confirm-code', dialog), confirm.code);
  setText($('.confirm-then', dialog), confirm.then || '');
  for (const b of dialog.querySelectorAll('button')) b.disabled = false;
}

export function renderConfirm() {
  const dialog = document.getElementById('confirm-dialog');
  const next = model.confirms.values().next().value || null;
  if (!next) {
    shownConfirm = null;
    if (dialog.open) dialog.close();
    return;
  }
  const changed = shownConfirm !== String(next.question);
  if (changed) {
    shownConfirm = String(next.question);
    fillConfirm(dialog, next);
  }
  if (!dialog.open) dialog.showModal();
  if (changed) $('.confirm-yes', dialog).focus();
}

let answeringConfirm = null; // the question whose answer is on its way

async function answerConfirm(yes) {
  const question = shownConfirm;
  if (question === null || answeringConfirm === question) return;
  answeringConfirm = question;
  const dialog = document.getElementById('confirm-dialog');
  for (const b of dialog.querySelectorAll('button')) b.disabled = true;
  try {
    await api('POST', `/api/confirms/${encodeURIComponent(question)}`, { yes });
    if (!yes) toast('Cancelled: nothing was sent');
  } catch (error) {
    toastError(error);
  }
  // Answered (or no longer waiting): the server also sends confirm_closed.
  answeringConfirm = null;
  model.confirms.delete(question);
  renderConfirm();
}

/** A `confirm_closed` message. */
export function confirmClosed(question, reason) {
  const key = String(question);
  if (!model.confirms.has(key)) return;
  model.confirms.delete(key);
  if (shownConfirm === key && reason === 'timed_out') toast('The code question timed out: nothing was sent');
  renderConfirm();
}

// ---------------------------------------------------------------- offer

function fillOffer(dialog, offer) {
  setText($('.offer-peer', dialog), peerLabel(offer.peer));
  setText($('.offer-fingerprint', dialog), offer.fingerprint || (offer.peer && offer.peer.fingerprint) || '');

  // How this node knows the sender (offers from trusted peers never ask).
  const known = offer.peer && model.peers.get(String(offer.peer.id));
  const standing = $('.offer-standing', dialog);
  if (!known || known.first_contact) {
    standing.className = 'pill offer-standing first';
    setText(standing, 'first contact');
  } else {
    standing.className = `badge offer-standing trust-${known.trust}`;
    setText(standing, known.trust === 'changed' ? 'CHANGED' : known.trust);
  }

  const slot = $('.offer-warning-slot', dialog);
  slot.replaceChildren();
  const abandoned = Number(offer.abandoned_exchanges) || 0;
  if (abandoned > 0) {
    slot.append(el('p', {
      class: 'offer-warning',
      role: 'alert',
      text: `${abandoned} key ${abandoned === 1 ? 'exchange was' : 'exchanges were'} abandoned in the last 10 minutes: ` +
        'someone may be trying to fake the code. Compare it carefully.',
    }));
  }

  if (offer.localsend) {
    slot.append(el('p', {
      class: 'offer-localsend',
      text: `${offer.localsend}: LocalSend has no verification code. Compare this fingerprint ` +
        "with the one in the device's LocalSend settings.",
    }));
  }
  if (offer.text) {
    slot.append(el('blockquote', { class: 'offer-text', text: offer.text }));
  }

  // Known peers' offers may come without a code to compare.
  setText($('.offer-code', dialog), offer.code || '');
  $('.code-box', dialog).hidden = !offer.code;
  setText($('.offer-summary', dialog), `${filesAndFolders(offer.files, offer.folders)}, ${formatSize(offer.bytes)}`);
  const exec = $('.offer-exec-note', dialog);
  // A large send's first batch is all that is seen before the answer.
  const among = offer.executables_among < offer.files + (offer.folders || 0) ? ` of the first ${offer.executables_among}` : '';
  setText(exec, offer.executables ? `${offer.executables}${among} marked executable` : '');
  exec.hidden = !offer.executables;

  const items = (offer.entries || []).map((entry) => el(
    'li',
    { class: entry.executable ? 'exec' : '' },
    el('span', { class: 'offer-file-path', text: entry.path, title: entry.path }),
    entry.executable ? el('span', { class: 'offer-file-exec badge', text: 'executable' }) : null,
    el('span', { class: 'offer-file-size', text: entry.folder ? 'folder' : formatSize(entry.size) }),
  ));
  $('.offer-files', dialog).replaceChildren(...items);
  const more = $('.offer-more', dialog);
  setText(more, offer.more > 0 ? `and ${offer.more} more` : '');
  more.hidden = !(offer.more > 0);
  for (const b of dialog.querySelectorAll('button')) b.disabled = false;
}

export function renderOffer() {
  const dialog = document.getElementById('offer-dialog');
  const offers = sortedOffers();
  const next = offers[0] || null;
  if (!next) {
    shownOffer = null;
    if (dialog.open) dialog.close();
    return;
  }
  const changed = shownOffer !== String(next.offer_id);
  if (changed) {
    shownOffer = String(next.offer_id);
    fillOffer(dialog, next);
  }
  const queue = document.getElementById('offer-queue');
  const waiting = offers.length - 1;
  setText(queue, waiting ? `${waiting} more ${waiting === 1 ? 'offer' : 'offers'} waiting` : '');
  queue.hidden = !waiting;
  if (!dialog.open) dialog.showModal();
  if (changed) $('.offer-accept', dialog).focus();
}

async function answerOffer(decision) {
  const id = shownOffer;
  if (id === null) return;
  const dialog = document.getElementById('offer-dialog');
  for (const b of dialog.querySelectorAll('button')) b.disabled = true;
  try {
    await api('POST', `/api/offers/${encodeURIComponent(id)}`, { decision });
    if (decision === 'reject') toast('Offer rejected');
  } catch (error) {
    toastError(error);
  }
  model.offers.delete(id);
  renderOffer();
}

/** An `offer_closed` message. */
export function offerClosed(offerId, reason) {
  const key = String(offerId);
  const offer = model.offers.get(key);
  if (!offer) return;
  model.offers.delete(key);
  if (shownOffer === key) {
    if (reason === 'withdrawn') toast(`${offer.peer ? offer.peer.name : 'The sender'} withdrew the offer`);
    else if (reason === 'timed_out') toast('offer timed out');
  }
  renderOffer();
}

// ---------------------------------------------------------------- notifications

function notificationsUsable() {
  return 'Notification' in window && window.isSecureContext;
}

/** Shows a system notification, only while this tab is hidden. */
function notify(title, body, tag) {
  if (!document.hidden || !notificationsUsable() || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(title, { body, tag, icon: '/assets/icon.svg' });
    n.addEventListener('click', () => {
      window.focus();
      n.close();
    });
  } catch {
    // Some browsers only allow notifications from a service worker.
  }
}

export function notifyOffer(offer) {
  const name = offer.peer ? offer.peer.name : 'A peer';
  notify(`${name} wants to send ${filesAndFolders(offer.files, offer.folders)}`,
    `${formatSize(offer.bytes)} · verification code ${offer.code}`, `offer-${offer.offer_id}`);
}

export function notifyConfirm(confirm) {
  notify(`Compare the code for ${confirm.peer ? confirm.peer.name : 'a new peer'}`,
    `Verification code ${confirm.code}`, `confirm-${confirm.question}`);
}

// ---------------------------------------------------------------- wiring

export function setupDialogs() {
  const confirmDialog = document.getElementById('confirm-dialog');
  $('.confirm-yes', confirmDialog).addEventListener('click', () => answerConfirm(true));
  $('.confirm-no', confirmDialog).addEventListener('click', () => answerConfirm(false));
  // Closing it (Escape) means "no": the send does not go ahead.
  confirmDialog.addEventListener('close', () => {
    if (shownConfirm !== null && model.confirms.has(shownConfirm)) answerConfirm(false);
  });

  const offerDialog = document.getElementById('offer-dialog');
  $('.offer-accept', offerDialog).addEventListener('click', () => answerOffer('accept'));
  $('.offer-trust', offerDialog).addEventListener('click', () => answerOffer('accept_and_trust'));
  $('.offer-reject', offerDialog).addEventListener('click', () => answerOffer('reject'));
  // An offer needs an explicit answer: Escape does not dismiss it, and if
  // the browser closes the dialog anyway, it comes back while the offer waits.
  offerDialog.addEventListener('cancel', (e) => e.preventDefault());
  offerDialog.addEventListener('close', () => {
    if (shownOffer !== null && model.offers.has(shownOffer)) setTimeout(renderOffer, 0);
  });

  // Permission is asked only from this click, never on load.
  const button = document.getElementById('enable-notifications');
  const refresh = () => {
    button.hidden = !notificationsUsable() || Notification.permission !== 'default';
  };
  refresh();
  button.addEventListener('click', async () => {
    try {
      await Notification.requestPermission();
    } catch {
      // An old callback-only API; the permission check below still tells.
    }
    refresh();
    toast(Notification.permission === 'granted'
      ? 'Notifications on: offers reach you while this tab is hidden'
      : 'Notifications stay off');
  });
}
