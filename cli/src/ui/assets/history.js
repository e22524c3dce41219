// The history view: past sessions with each peer, fetched from
// GET /api/history when the view opens and after a transfer ends.

import { el, api, toast, toastError, formatSize, formatWhen, formatDuration } from './util.js';

let loading = null;

function sessionRow(session) {
  const sent = session.direction === 'send';
  const took = session.ended && session.started ? formatDuration((session.ended - session.started) / 1000) : '';
  return el(
    'tr',
    { class: `session outcome-${session.outcome}` },
    el('td', { class: 'session-when', text: formatWhen(session.started), title: new Date(session.started).toString() }),
    el('td', { class: 'session-direction', text: sent ? '↑ sent' : '↓ received' }),
    el('td', { class: 'session-files num', text: session.files }),
    el('td', { class: 'session-bytes num', text: formatSize(session.bytes) }),
    el('td', {}, el('span', { class: `session-outcome badge outcome-${session.outcome}`, text: session.outcome })),
    el('td', { class: 'session-detail muted', text: [took, session.detail].filter(Boolean).join(' · ') }),
  );
}

function peerBlock(entry) {
  const peer = entry.peer;
  const sessions = entry.sessions || [];
  return el(
    'section',
    { class: 'history-peer card', data: { peerId: String(peer.id) } },
    el(
      'header',
      { class: 'history-head' },
      el('h3', { class: 'history-name', text: peer.alias ? `${peer.alias} (${peer.name})` : peer.name }),
      el('span', { class: 'mono muted', text: peer.short_id }),
      el('span', { class: `badge trust-${peer.trust}`, text: peer.trust === 'changed' ? 'CHANGED' : peer.trust }),
    ),
    el(
      'div',
      { class: 'table-wrap' },
      el(
        'table',
        { class: 'sessions' },
        el('thead', {}, el('tr', {},
          ['When', 'Direction', 'Files', 'Size', 'Outcome', 'Detail'].map((h, i) =>
            el('th', { scope: 'col', class: i === 2 || i === 3 ? 'num' : null, text: h })))),
        el('tbody', {}, sessions.map(sessionRow)),
      ),
    ),
  );
}

function newest(entry) {
  const first = (entry.sessions || [])[0];
  return first ? first.started : 0;
}

/** Fetches and draws the history (requests made meanwhile share one fetch). */
export function loadHistory() {
  if (loading) return loading;
  const list = document.getElementById('history-list');
  list.setAttribute('aria-busy', 'true');
  loading = api('GET', '/api/history')
    .then((entries) => {
      const sorted = (entries || []).slice().sort((a, b) => newest(b) - newest(a));
      list.replaceChildren(...sorted.map(peerBlock));
      document.getElementById('history-empty').hidden = sorted.length > 0;
    })
    .catch(toastError)
    .finally(() => {
      list.removeAttribute('aria-busy');
      loading = null;
    });
  return loading;
}

export function setupHistory() {
  document.getElementById('open-folder').addEventListener('click', () => {
    api('POST', '/api/open', { path: null })
      .then(() => toast('Opened the receive folder on the node'))
      .catch(toastError);
  });
}
