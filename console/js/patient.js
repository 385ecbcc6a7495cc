// A patient's page: the live ECG strip (`ecg` subscription), trends over
// 1 h and 24 h (`vitals(from, to, resolution)` aggregates), and the alert
// history (`alerts` connection) with acknowledge and a note. A caller who
// may not see the patient gets the API's refusal, shown as such.

import { h, fill, alarmBadge, dateTime, explain, words, announce, notice } from './ui.js';
import { lineChart } from './charts.js';
import { EcgStrip } from './ecg.js';

const PROFILE = `query($p: ID!) { patient(id: $p) { id devices { id kind } careTeam } }`;
const ECG = `subscription($p: ID!) { ecg(patientId: $p) { deviceId start hz millivolts } }`;
const TREND = `query($p: ID!, $m: VitalMetric!, $from: DateTime!, $to: DateTime!, $r: Resolution) {
  vitals(patientId: $p, metric: $m, from: $from, to: $to, resolution: $r) { deviceId start min max mean count } }`;
const HISTORY = `query($p: ID!, $after: String) { alerts(patientId: $p, status: ALL, first: 25, after: $after) {
  nodes { id kind priority category reading threshold raisedAt resolvedAt resolveReason acknowledgedBy acknowledgedAt acknowledgementNote }
  pageInfo { hasNextPage endCursor } } }`;
const ACK = `mutation($id: ID!, $n: String) { acknowledgeAlert(id: $id, note: $n) }`;
const LIVE_ALERTS = `subscription($p: ID) { alerts(patientId: $p) { alertId change kind priority at } }`;

const METRICS = [
  ['HEART_RATE', 'Heart rate (device)', 'bpm'],
  ['ECG_HEART_RATE', 'Heart rate (ECG)', 'bpm'],
  ['SPO2', 'SpO2', '%'],
  ['SYSTOLIC', 'Systolic', 'mmHg'],
  ['DIASTOLIC', 'Diastolic', 'mmHg'],
];

export function mount(root, session, state) {
  const id = state.id;
  const stops = [];
  let strip = null;
  let gone = false;
  const back = h('button', { type: 'button', onclick: () => history.back() }, '← Back');
  const head = h('h1', {}, `Patient ${id || ''}`);
  const status = h('p', { role: 'status', class: 'muted' }, 'Loading…');
  fill(root, h('div', { class: 'toolbar' }, back, head), status);
  if (!id) {
    notice(status, 'No patient chosen.', 'error');
    return () => {};
  }

  session
    .q(PROFILE, { p: id })
    .then((d) => {
      if (gone) return;
      const p = d.patient;
      status.remove();
      const devices = p.devices.length ? p.devices.map((x) => `${x.kind} (${x.id})`).join(', ') : 'none';
      const ecgBox = h('div', { class: 'ecg-box' });
      const ecgSection = h('section', { 'aria-labelledby': 'ecg-h' }, h('h2', { id: 'ecg-h' }, 'Live ECG'), ecgBox);
      const trends = trendSection(session, id);
      const alerts = alertSection(session, id, stops);
      root.append(
        h('p', { class: 'muted' }, `Devices: ${devices} · Care team: ${p.careTeam.join(', ') || 'none'}`),
        ecgSection,
        trends,
        alerts,
      );
      strip = new EcgStrip(ecgBox, { seconds: 20 });
      strip.start();
      window.__cardioStrip = strip; // read by the performance test (frames drawn)
      stops.push(
        session.live.subscribe(ECG, { p: id }, {
          next: (x) => strip.push(x.ecg),
          error: (e) => ecgSection.append(h('p', { class: 'notice notice-error' }, `ECG: ${explain(e)}`)),
        }),
      );
    })
    .catch((e) => {
      if (gone) return;
      const refused = e.code === 'FORBIDDEN' || e.code === 'NOT_FOUND';
      status.className = 'notice notice-error refused';
      status.setAttribute('role', 'alert');
      status.textContent = refused
        ? `Refused: you may not see this patient's record. ${explain(e)}`
        : `Could not load the patient: ${explain(e)}`;
    });

  return () => {
    gone = true;
    if (strip) strip.stop();
    for (const s of stops) s();
  };
}

function trendSection(session, id) {
  const metric = h('select', { id: 'trend-metric' }, METRICS.map(([v, label]) => h('option', { value: v }, label)));
  const span1 = h('button', { type: 'button', 'aria-pressed': 'true' }, '1 h');
  const span24 = h('button', { type: 'button', 'aria-pressed': 'false' }, '24 h');
  const canvas = h('canvas', { class: 'trend', width: 720, height: 180, role: 'img', 'aria-label': 'Trend' });
  const summary = h('p', { class: 'muted', 'aria-live': 'polite' });
  let hours = 1;
  const load = async () => {
    const to = Date.now();
    const from = to - hours * 3600_000;
    const [m, label, unit] = METRICS.find(([v]) => v === metric.value);
    try {
      const d = await session.q(TREND, {
        p: id,
        m,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        r: hours === 1 ? 'MINUTE' : 'HOUR',
      });
      const points = d.vitals
        .map((v) => ({ t: Date.parse(v.start), mean: v.mean, min: v.min, max: v.max }))
        .sort((a, b) => a.t - b.t);
      const text = lineChart(canvas, points, { from, to, unit, label: `${label}, last ${hours} h` });
      canvas.setAttribute('aria-label', text);
      summary.textContent = text;
    } catch (e) {
      summary.textContent = `Trend: ${explain(e)}`;
    }
  };
  const pick = (n) => {
    hours = n;
    span1.setAttribute('aria-pressed', String(n === 1));
    span24.setAttribute('aria-pressed', String(n === 24));
    load();
  };
  span1.addEventListener('click', () => pick(1));
  span24.addEventListener('click', () => pick(24));
  metric.addEventListener('change', load);
  load();
  return h(
    'section',
    { 'aria-labelledby': 'trend-h' },
    h('h2', { id: 'trend-h' }, 'Trends'),
    h('div', { class: 'toolbar' }, h('label', { for: 'trend-metric' }, 'Vital sign '), metric, h('span', { role: 'group', 'aria-label': 'Period' }, span1, span24)),
    canvas,
    summary,
  );
}

function alertSection(session, id, stops) {
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'Older alerts');
  const status = h('p', { class: 'muted', role: 'status' });
  let cursor = null;
  const load = async (reset) => {
    try {
      const d = await session.q(HISTORY, { p: id, after: reset ? null : cursor });
      if (reset) body.replaceChildren();
      for (const a of d.alerts.nodes) body.append(row(session, a, () => load(true)));
      cursor = d.alerts.pageInfo.endCursor;
      more.hidden = !d.alerts.pageInfo.hasNextPage;
      status.textContent = body.children.length ? '' : 'No alerts.';
    } catch (e) {
      status.textContent = `Alerts: ${explain(e)}`;
    }
  };
  more.addEventListener('click', () => load(false));
  load(true);
  stops.push(
    session.live.subscribe(LIVE_ALERTS, { p: id }, {
      next: (d) => {
        if (d.alerts.change === 'RAISED') announce(`${words(d.alerts.priority)} priority alarm: ${words(d.alerts.kind)}`, d.alerts.priority === 'HIGH');
        load(true);
      },
    }),
  );
  return h(
    'section',
    { 'aria-labelledby': 'alerts-h' },
    h('h2', { id: 'alerts-h' }, 'Alert history'),
    status,
    h(
      'table',
      { class: 'alerts' },
      h('thead', {}, h('tr', {}, ['Alarm', 'Reading', 'Raised', 'Resolved', 'Acknowledged', 'Category'].map((c) => h('th', { scope: 'col' }, c)))),
      body,
    ),
    more,
  );
}

function row(session, a, reload) {
  const reading = typeof a.reading === 'number' ? `${Math.round(a.reading * 10) / 10}${typeof a.threshold === 'number' ? ` (limit ${a.threshold})` : ''}` : '—';
  const resolved = a.resolvedAt ? `${dateTime(a.resolvedAt)}${a.resolveReason ? ` · ${words(a.resolveReason)}` : ''}` : 'open';
  let ack;
  if (a.acknowledgedAt) {
    ack = h('span', {}, `${a.acknowledgedBy} at ${dateTime(a.acknowledgedAt)}`, a.acknowledgementNote ? h('br') : null, a.acknowledgementNote ? `“${a.acknowledgementNote}”` : null);
  } else if (!a.resolvedAt) {
    const noteId = `note-${a.id}`;
    const note = h('input', { type: 'text', id: noteId, maxlength: 1000, placeholder: 'Note (optional)' });
    const msg = h('span', { role: 'status' });
    const button = h('button', { type: 'submit' }, 'Acknowledge');
    const form = h('form', { class: 'ack' }, h('label', { for: noteId, class: 'sr-only' }, `Note for ${words(a.kind)}`), note, button, msg);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      try {
        await session.q(ACK, { id: a.id, n: note.value.trim() || null });
        announce(`${words(a.kind)} acknowledged`);
        reload();
      } catch (e) {
        msg.textContent = explain(e);
        button.disabled = false;
      }
    });
    ack = form;
  } else {
    ack = 'no';
  }
  return h(
    'tr',
    { 'data-alert': a.id },
    h('td', {}, alarmBadge(a)),
    h('td', {}, reading),
    h('td', {}, dateTime(a.raisedAt)),
    h('td', {}, resolved),
    h('td', {}, ack),
    h('td', {}, words(a.category)),
  );
}
