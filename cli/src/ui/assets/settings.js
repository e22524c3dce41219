// The settings view: the keys of config.toml (GET /api/settings), one field
// each; saving posts every changed key (POST /api/settings {key, value}).
// Also a read-only card about this node.

import { model } from './model.js';
import { el, setText, api } from './util.js';

// Keys with a fixed set of values get a <select>.
const CHOICES = {
  consent: ['ask', 'yes', 'trusted-only'],
  compress: ['auto', 'on', 'off'],
  'first-contact': ['ask', 'yes'],
};

// Friendlier headings; the key itself is shown too (it is what `config set` takes).
const LABELS = {
  name: 'Display name',
  dir: 'Receive folder',
  port: 'Port',
  interfaces: 'Network interfaces',
  consent: 'Incoming offers',
  compress: 'Compression',
  'first-contact': 'First contact',
};

let settings = []; // the last [Setting] from the node
let initial = new Map(); // key -> the field's text as loaded

function valueText(value) {
  if (value === null || value === undefined) return '';
  if (Array.isArray(value)) return value.join(', ');
  return String(value);
}

function field(setting) {
  const id = `setting-${setting.key}`;
  const helpId = `${id}-help`;
  let control;
  const choices = CHOICES[setting.key];
  if (choices) {
    control = el('select', { id, name: setting.key, 'aria-describedby': helpId },
      el('option', { value: '', text: `default (${setting.default})` }),
      choices.map((c) => el('option', { value: c, text: c })));
  } else {
    control = el('input', {
      id,
      name: setting.key,
      type: 'text',
      placeholder: setting.default || '',
      autocomplete: 'off',
      spellcheck: 'false',
      inputmode: setting.key === 'port' ? 'numeric' : null,
      'aria-describedby': helpId,
    });
  }
  control.value = valueText(setting.value);
  return el(
    'div',
    { class: 'setting' },
    el('label', { for: id },
      el('span', { class: 'setting-label', text: LABELS[setting.key] || setting.key }),
      el('code', { class: 'setting-key', text: setting.key })),
    control,
    el('small', { id: helpId, class: 'setting-help', text: setting.help || '' },
      setting.key === 'interfaces' ? el('span', { text: ' Separate several with commas.' }) : null),
  );
}

function renderFields() {
  const box = document.getElementById('settings-fields');
  box.replaceChildren(...settings.map(field));
  initial = new Map(settings.map((s) => [s.key, valueText(s.value)]));
}

function showResult(text, isError = false) {
  const result = document.getElementById('settings-result');
  setText(result, text);
  result.classList.toggle('error', isError);
}

export async function loadSettings() {
  try {
    settings = (await api('GET', '/api/settings')) || [];
    renderFields();
  } catch (error) {
    showResult(error.message, true);
  }
}

async function save(form) {
  const changed = [];
  for (const s of settings) {
    const control = form.elements[s.key];
    if (control && control.value.trim() !== initial.get(s.key)) changed.push([s.key, control.value.trim()]);
  }
  if (!changed.length) {
    showResult('nothing changed');
    return;
  }
  const submit = form.querySelector('button[type=submit]');
  submit.disabled = true;
  const saved = [];
  let failure = null;
  for (const [key, text] of changed) {
    try {
      // An empty field removes the key from the file: the default applies.
      const answer = await api('POST', '/api/settings', { key, value: text === '' ? null : text });
      if (Array.isArray(answer)) settings = answer;
      saved.push(key);
    } catch (error) {
      failure = `${key}: ${error.message}`;
      break;
    }
  }
  submit.disabled = false;
  // Redraw from the node's answer, but keep what was typed and not saved.
  renderFields();
  for (const [key, text] of changed.slice(saved.length)) {
    if (form.elements[key]) form.elements[key].value = text;
  }

  // "saved port, name; applies from the next start" (grouped by the note).
  const byNote = new Map();
  for (const key of saved) {
    const s = settings.find((x) => x.key === key);
    const note = (s && s.note) || 'applies from the next start';
    byNote.set(note, [...(byNote.get(note) || []), key]);
  }
  let text = [...byNote].map(([note, keys]) => `saved ${keys.join(', ')}; ${note}`).join('. ');
  if (failure) text = text ? `${text}. Not saved: ${failure}` : `not saved: ${failure}`;
  showResult(text, Boolean(failure));
}

/** The "This node" card. */
export function renderNodeDetails() {
  const node = model.node;
  const list = document.getElementById('node-details');
  if (!node) {
    list.replaceChildren();
    return;
  }
  const rows = [
    ['Name', node.name],
    ['Node id', node.id],
    ['Fingerprint', node.fingerprint],
    ['Receive folder', node.dir],
    ['Listening on', (node.addresses || []).join(', ') || 'not listening'],
    ['Discovery', node.discovery],
    ['Incoming offers', node.asks === false ? 'answered on the terminal' : 'answered on this page'],
  ];
  list.replaceChildren(...rows.filter(([, v]) => v).map(([k, v]) =>
    el('div', {}, el('dt', { text: k }), el('dd', { class: 'mono', text: v }))));
}

export function setupSettings() {
  const form = document.getElementById('settings-form');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    save(form);
  });
}
