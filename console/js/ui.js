// Small DOM helpers (elements are built, never parsed from strings: text is
// always text) and the console's shared rules: alarm colours with text, the
// stale-value rule.

/** An element: `h('button', {class: 'x', onclick: f}, 'text', child…)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A value older than this (by its own `at`) is not shown as current. */
export const STALE_MS = 10_000;

/** Milliseconds since the epoch of a DateTime string (or a number). */
export function ms(at) {
  if (at === null || at === undefined) return NaN;
  return typeof at === 'number' ? at : Date.parse(at);
}

export function isStale(at, now = Date.now()) {
  const t = ms(at);
  return !(t > 0) || now - t > STALE_MS;
}

export function clock(at) {
  const t = ms(at);
  if (!(t > 0)) return '—';
  return new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function dateTime(at) {
  const t = ms(at);
  if (!(t > 0)) return '—';
  return new Date(t).toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' });
}

/** "12 s ago", "3 min ago". */
export function ago(at, now = Date.now()) {
  const t = ms(at);
  if (!(t > 0)) return 'never';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/** `SEVERE_LOW_SPO2` -> `Severe low SpO2`. */
export function words(value) {
  if (!value) return '';
  const s = String(value).toLowerCase().replace(/_/g, ' ');
  return (s[0].toUpperCase() + s.slice(1)).replace(/spo2/gi, 'SpO2').replace(/\becg\b/gi, 'ECG').replace(/graphql/gi, 'GraphQL');
}

/** IEC 60601-1-8 colours: high red, medium yellow, low cyan (CSS classes). */
export function priorityClass(priority) {
  return { HIGH: 'alarm-high', MEDIUM: 'alarm-medium', LOW: 'alarm-low' }[priority] || 'alarm-none';
}

/** An alarm badge: colour AND text (kind + priority), never colour alone. */
export function alarmBadge(alert) {
  if (!alert) return h('span', { class: 'alarm alarm-none' }, 'No alarm');
  const prio = alert.priority ? ` · ${words(alert.priority)} priority` : '';
  const mark = { HIGH: '!!!', MEDIUM: '!!', LOW: '!' }[alert.priority] || '';
  return h(
    'span',
    { class: `alarm ${priorityClass(alert.priority)}`, 'data-kind': alert.kind, 'data-priority': alert.priority || '' },
    mark ? h('span', { 'aria-hidden': 'true', class: 'alarm-mark' }, mark) : null,
    `${words(alert.kind)}${prio}`,
  );
}

/** Polite announcements for screen readers (new alarms, messages). */
export function announce(text, assertive = false) {
  const region = document.getElementById(assertive ? 'announce-now' : 'announce');
  if (!region) return;
  region.textContent = '';
  // A fresh text node each time, so the same words are announced again.
  requestAnimationFrame(() => {
    region.textContent = text;
  });
}

/** A status line under a form or panel. */
export function notice(el, text, kind = 'info') {
  el.className = `notice notice-${kind}`;
  el.textContent = text;
  el.hidden = !text;
}

/** Explains an API error in words, without echoing anything sensitive. */
export function explain(e) {
  if (!e) return '';
  const reason = e.reason ? ` (${words(e.reason)})` : '';
  switch (e.code) {
    case 'FORBIDDEN':
      return `Not allowed${reason}.`;
    case 'NOT_FOUND':
      return `Not found${reason}.`;
    case 'UNAVAILABLE':
      return 'The node is unavailable; try again.';
    case 'RATE_LIMITED':
      return 'Too many requests; slow down.';
    default:
      return `${e.message || 'Failed'}${reason}`;
  }
}

/** Runs `f` once per animation frame at most, however often it is asked. */
export function frameBatcher(f) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      f();
    });
  };
}

/** A confirmation dialog (a real <dialog>, keyboard-usable). */
export function confirmDialog(title, body, confirmLabel) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'submit', class: 'danger', value: 'ok' }, confirmLabel);
    const cancel = h('button', { type: 'button', value: 'cancel' }, 'Cancel');
    const form = h('form', { method: 'dialog' }, h('h2', {}, title), h('p', {}, body), h('div', { class: 'row' }, cancel, ok));
    const dlg = h('dialog', { 'aria-label': title }, form);
    cancel.addEventListener('click', () => dlg.close('cancel'));
    dlg.addEventListener('close', () => {
      resolve(dlg.returnValue === 'ok');
      dlg.remove();
    });
    form.addEventListener('submit', () => {
      dlg.returnValue = 'ok';
    });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

/** Two-digit number formatting for vitals. */
export function num(v, digits = 0) {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '—';
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
