// Small helpers shared by every view: DOM building, icons, formatting,
// requests and the toast. Nothing here knows about the model.

// ---------------------------------------------------------------- DOM

/**
 * Builds an element. `attrs` keys:
 *   class  -> className        text    -> textContent (never parsed as HTML)
 *   data   -> dataset entries  on<ev>  -> event listener (function)
 *   any other key -> setAttribute (true -> "", false/null/undefined -> skipped)
 * Children may be nodes, strings (text nodes), arrays, or null/false (skipped).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'data') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

/** Sets textContent only when it differs (avoids needless layout work). */
export function setText(node, text) {
  const s = text === null || text === undefined ? '' : String(text);
  if (node.textContent !== s) node.textContent = s;
}

/**
 * Keeps `container`'s element children equal to `items`, in order, reusing
 * the element of each key. `create(item)` builds a new element, `update(node,
 * item)` refreshes one. Existing nodes are only moved when out of place, so a
 * focused button or an open file picker inside them survives.
 */
export function reconcile(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const child of container.children) {
    if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
  }
  let index = 0;
  for (const item of items) {
    const key = String(keyOf(item));
    let node = existing.get(key);
    if (node) existing.delete(key);
    else {
      node = create(item);
      node.dataset.key = key;
    }
    update(node, item);
    const at = container.children[index];
    if (at !== node) container.insertBefore(node, at || null);
    index += 1;
  }
  for (const node of existing.values()) node.remove();
}

// ---------------------------------------------------------------- icons

// Stroke icons on a 24x24 grid (constant path data, drawn with currentColor).
const ICONS = {
  monitor: 'M4 4h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z M8 21h8 M12 17v4',
  up: 'M12 19V5 M5 12l7-7 7 7',
  down: 'M12 5v14 M19 12l-7 7-7-7',
  folder: 'M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z',
  file: 'M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z M14 3v5h5',
  x: 'M18 6L6 18 M6 6l12 12',
  alert: 'M10.3 3.9L1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z M12 9v4 M12 17h.01',
  info: 'M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20z M12 16v-4 M12 8h.01',
  send: 'M22 2L11 13 M22 2l-7 20-4-9-9-4z',
  shield: 'M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z',
  check: 'M20 6L9 17l-5-5',
  upload: 'M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4 M17 8l-5-5-5 5 M12 3v12',
};

export function icon(name, extraClass = '') {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', `icon ${extraClass}`.trim());
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name] || ICONS.file);
  svg.appendChild(path);
  return svg;
}

// ---------------------------------------------------------------- formatting

/** Decimal units, one decimal place: "512 B", "12.4 MB". */
export function formatSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1000) return `${Math.round(n)} B`;
  const units = ['kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  let value = n;
  let unit = -1;
  // Divide until the value, rounded to one decimal, stays below 1000.
  while (unit < units.length - 1 && Math.round(value * 10) / 10 >= 1000) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

export function formatRate(bytesPerSecond) {
  return `${formatSize(bytesPerSecond)}/s`;
}

/** "42 %": an integer percent that only reaches 100 when everything moved. */
export function formatPercent(done, total) {
  if (!total) return '0 %';
  const p = Math.min(100, Math.floor((done / total) * 100));
  return `${p} %`;
}

/** "12 s", "3 min 20 s", "2 h 5 min". */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const rest = s % 60;
    return rest ? `${Math.floor(s / 60)} min ${rest} s` : `${s / 60} min`;
  }
  const minutes = Math.floor((s % 3600) / 60);
  return minutes ? `${Math.floor(s / 3600)} h ${minutes} min` : `${Math.floor(s / 3600)} h`;
}

/** "1 file", "3 files". */
export function plural(n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`;
}

/** What an offer holds: "4 files", "4 files and 3 folders", "1 folder". */
export function filesAndFolders(files, folders = 0) {
  if (!folders) return plural(files, 'file');
  if (!files) return plural(folders, 'folder');
  return `${plural(files, 'file')} and ${plural(folders, 'folder')}`;
}

const whenFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });

/** A wall-clock time: today's as "14:05", older ones with the date. */
export function formatWhen(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return timeFormat.format(d);
  return whenFormat.format(d);
}

/** "just now", "5 min ago", "3 h ago", then a date. */
export function formatAgo(ms) {
  if (!ms) return '';
  const s = (Date.now() - ms) / 1000;
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 7 * 86400) return `${Math.round(s / 86400)} d ago`;
  return whenFormat.format(new Date(ms));
}

/** "laptop (8b6d3ec3)" for a PeerRef or Peer; the target text otherwise. */
export function peerLabel(peer, fallback = 'unknown peer') {
  if (!peer) return fallback;
  return peer.short_id ? `${peer.name} (${peer.short_id})` : peer.name;
}

/** A stable small number for a string: picks an avatar colour. */
export function hueOf(text, buckets = 8) {
  let h = 0;
  for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % buckets;
}

// ---------------------------------------------------------------- requests

/**
 * A JSON request to the node. Resolves to the parsed answer (null for 204),
 * rejects with an Error whose message is the server's `{error}` text.
 */
export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new Error('the node did not answer (is it still running?)');
  }
  return readAnswer(response);
}

/** Turns a fetch Response into JSON, null, or an Error with the server's text. */
export async function readAnswer(response) {
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = data && typeof data.error === 'string' ? data.error : `request failed (HTTP ${response.status})`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

// ---------------------------------------------------------------- toast

let toastTimer = 0;

/** Shows a short message at the bottom; `kind` is "info" or "error". */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toast');
  if (!box) return;
  box.textContent = message;
  box.classList.toggle('error', kind === 'error');
  // The toast is a popover, so it can sit in the top layer above an open
  // modal dialog; showing it again puts it above the newest one.
  if (typeof box.showPopover === 'function' && box.hasAttribute('popover')) {
    if (box.matches(':popover-open')) box.hidePopover();
    box.showPopover();
  }
  box.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.remove('show'), kind === 'error' ? 7000 : 4000);
}

/** For `.catch(...)`: shows a failed request's message as an error toast. */
export function toastError(error) {
  toast(error && error.message ? error.message : String(error), 'error');
}
