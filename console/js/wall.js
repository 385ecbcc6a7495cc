// The clinician's wall: every patient of the care team with live HR, SpO2
// and BP (sparklines), the ECG-derived HR and rhythm, and the newest open
// alarm in its IEC 60601-1-8 colour with its text. Data: `me { patients {
// latestVitals openAlerts } }` once, then a `vitals` subscription per
// patient and one `alerts` subscription for all of them.
//
// Performance: events only change plain objects and mark their tile dirty;
// one animation frame writes the dirty tiles (text, classes, sparklines),
// so 50 patients at 1 Hz cost a few small writes per frame and no layout
// thrash. Staleness is judged by each value's own `at` once a second.

import { h, fill, alarmBadge, announce, isStale, ago, num, words, ms, explain, frameBatcher, priorityClass } from './ui.js';
import { sparkline } from './charts.js';
import { EcgStrip } from './ecg.js';

const PATIENTS = `{ me { patients {
  id
  latestVitals {
    heartRate { value at deviceId }
    spo2 { value at deviceId }
    bloodPressure { systolic diastolic at deviceId }
    ecg { at deviceId state { heartRate rhythm quality } }
  }
  openAlerts { id kind priority raisedAt acknowledgedAt }
} } }`;

// One subscription for the whole care team (not one per patient).
const VITALS = `subscription { vitals {
  patientId deviceId samples { metric at value systolic diastolic } ecg { heartRate rhythm quality }
} }`;

const ALERTS = `subscription { alerts { alertId patientId change kind priority at } }`;

const ECG = `subscription($p: ID!) { ecg(patientId: $p) { deviceId start hz millivolts } }`;

const SPARK_MS = 60_000;
const KEEP = 240;

export function mount(root, session) {
  const status = h('p', { class: 'muted', role: 'status' }, 'Loading the care team…');
  const grid = h('ul', { class: 'wall', 'aria-label': 'Patients of your care team' });
  const filter = h('input', { type: 'search', id: 'wall-filter', placeholder: 'Filter by patient id', 'aria-label': 'Filter patients by id' });
  const alarmedFirst = h('input', { type: 'checkbox', id: 'wall-sort' });
  const focus = h('section', { class: 'focus', 'aria-labelledby': 'focus-h', hidden: true });
  fill(
    root,
    h('div', { class: 'toolbar' }, h('h1', {}, 'Patients'), filter, h('label', { for: 'wall-sort', class: 'check' }, alarmedFirst, ' Alarms first')),
    status,
    focus,
    grid,
  );
  const tiles = new Map(); // id -> tile
  const dirty = new Set();
  const stops = [];
  let gone = false;
  // One patient's live ECG above the wall (a central station's focus bed).
  let strip = null;
  let stopEcg = null;
  let focused = null;
  const showEcg = (id) => {
    if (stopEcg) stopEcg();
    if (strip) strip.stop();
    strip = null;
    stopEcg = null;
    for (const t of tiles.values()) t.ecgButton.setAttribute('aria-pressed', String(t.id === id && focused !== id));
    if (focused === id || id === null) {
      focused = null;
      focus.hidden = true;
      focus.replaceChildren();
      return;
    }
    focused = id;
    const box = h('div', { class: 'ecg-box' });
    fill(
      focus,
      h('div', { class: 'toolbar' }, h('h2', { id: 'focus-h' }, `Live ECG · ${id}`), h('button', { type: 'button', onclick: () => showEcg(null) }, 'Close ECG')),
      box,
    );
    focus.hidden = false;
    strip = new EcgStrip(box, { seconds: 20 });
    strip.start();
    window.__cardioStrip = strip; // read by the performance test (frames drawn)
    stopEcg = session.live.subscribe(ECG, { p: id }, { next: (x) => strip.push(x.ecg) });
  };

  const flush = frameBatcher(() => {
    const now = Date.now();
    for (const t of dirty) draw(t, now);
    dirty.clear();
  });
  const touch = (t) => {
    dirty.add(t);
    flush();
  };

  const reorder = () => {
    const q = filter.value.trim().toLowerCase();
    const list = [...tiles.values()];
    if (alarmedFirst.checked) {
      const rank = (t) => ({ HIGH: 0, MEDIUM: 1, LOW: 2 })[newest(t)?.priority] ?? 3;
      list.sort((a, b) => rank(a) - rank(b) || a.id.localeCompare(b.id));
    }
    for (const t of list) {
      t.el.hidden = q !== '' && !t.id.toLowerCase().includes(q);
      grid.append(t.el);
    }
  };
  filter.addEventListener('input', reorder);
  alarmedFirst.addEventListener('change', reorder);

  session
    .q(PATIENTS)
    .then((data) => {
      if (gone) return;
      const patients = data.me.patients;
      status.textContent = patients.length
        ? `${patients.length} patient${patients.length === 1 ? '' : 's'} on your care team.`
        : 'No patient is on your care team yet.';
      for (const p of patients) {
        const t = tile(p, session, showEcg);
        tiles.set(p.id, t);
        grid.append(t.el);
        touch(t);
      }
      stops.push(
        session.live.subscribe(VITALS, {}, {
          next: (d) => {
            const t = tiles.get(d.vitals.patientId);
            if (t) vitals(t, d.vitals, touch);
          },
          error: (e) => {
            for (const t of tiles.values()) {
              t.error = explain(e);
              touch(t);
            }
          },
        }),
      );
      stops.push(
        session.live.subscribe(ALERTS, {}, {
          next: (d) => {
            const e = d.alerts;
            const t = tiles.get(e.patientId);
            if (!t) return;
            alertEvent(t, e);
            touch(t);
            if (alarmedFirst.checked) reorder();
          },
          error: (e) => {
            status.textContent = `Alarms: ${explain(e)}`;
          },
        }),
      );
    })
    .catch((e) => {
      status.textContent = `Could not load the care team: ${explain(e)}`;
      status.setAttribute('role', 'alert');
    });

  // Values go stale by the clock too, with no event at all.
  const ticker = setInterval(() => {
    for (const t of tiles.values()) dirty.add(t);
    flush();
  }, 1000);

  return () => {
    gone = true;
    clearInterval(ticker);
    for (const stop of stops) stop();
    if (stopEcg) stopEcg();
    if (strip) strip.stop();
  };
}

function newest(t) {
  let best = null;
  for (const a of t.alerts.values()) if (!best || ms(a.raisedAt) > ms(best.raisedAt)) best = a;
  return best;
}

/** One vital's cells: the value, its unit, its age, a sparkline. */
function cell(label, unit, cls) {
  const value = h('span', { class: 'v' }, '—');
  const age = h('span', { class: 'age' }, 'no data');
  const canvas = h('canvas', { class: 'spark', width: 120, height: 28, 'aria-hidden': 'true' });
  const el = h('div', { class: `vital ${cls}` }, h('span', { class: 'k' }, label), age, h('span', { class: 'reading' }, value, h('span', { class: 'u' }, unit)), canvas);
  return { el, value, age, canvas, points: [], at: null, text: null, shown: null };
}

function tile(p, session, showEcg) {
  const hr = cell('HR', 'bpm', 'hr');
  const spo2 = cell('SpO2', '%', 'spo2');
  const bp = cell('BP', 'mmHg', 'bp');
  const ecgHr = h('span', { class: 'v' }, '—');
  const rhythm = h('span', { class: 'rhythm' }, 'no data');
  const ecgAge = h('span', { class: 'age' }, '');
  const ecg = h('div', { class: 'vital ecg' }, h('span', { class: 'k' }, 'ECG HR'), ecgAge, h('span', { class: 'reading' }, ecgHr, h('span', { class: 'u' }, 'bpm')), rhythm);
  const alarm = h('div', { class: 'tile-alarm' });
  const more = h('span', { class: 'more muted' });
  const open = h('button', { type: 'button', class: 'linkish', onclick: () => session.go('patient', { id: p.id }) }, p.id);
  const ecgButton = h('button', { type: 'button', class: 'small', 'aria-pressed': 'false', 'aria-label': `Live ECG of ${p.id}`, onclick: () => showEcg(p.id) }, 'ECG');
  const el = h(
    'li',
    { class: 'tile', 'data-patient': p.id },
    h('h2', { class: 'tile-head' }, open, more, ecgButton),
    alarm,
    h('div', { class: 'vitals' }, hr.el, spo2.el, bp.el, ecg),
  );
  const t = {
    id: p.id,
    el,
    hr,
    spo2,
    bp,
    ecg: { value: ecgHr, rhythm, age: ecgAge, state: null, at: null },
    alarm,
    more,
    ecgButton,
    alerts: new Map(),
    drawnAlarm: undefined,
    error: null,
  };
  const lv = p.latestVitals || {};
  if (lv.heartRate) put(t.hr, lv.heartRate.value, lv.heartRate.at, num(lv.heartRate.value));
  if (lv.spo2) put(t.spo2, lv.spo2.value, lv.spo2.at, num(lv.spo2.value));
  if (lv.bloodPressure) {
    const b = lv.bloodPressure;
    put(t.bp, b.systolic, b.at, `${num(b.systolic)}/${num(b.diastolic)}`);
  }
  if (lv.ecg) {
    t.ecg.state = lv.ecg.state;
    t.ecg.at = lv.ecg.at;
  }
  for (const a of p.openAlerts || []) t.alerts.set(a.id, a);
  return t;
}

function put(c, value, at, text) {
  const t = ms(at);
  if (c.at !== null && t < ms(c.at)) return; // an older reading than shown
  c.at = at;
  c.text = text;
  c.points.push({ t, v: value });
  if (c.points.length > KEEP) c.points.splice(0, c.points.length - KEEP);
}

function vitals(t, e, touch) {
  for (const s of e.samples || []) {
    if (s.metric === 'HEART_RATE') put(t.hr, s.value, s.at, num(s.value));
    else if (s.metric === 'SPO2') put(t.spo2, s.value, s.at, num(s.value));
    else if (s.metric === 'BLOOD_PRESSURE') put(t.bp, s.systolic, s.at, `${num(s.systolic)}/${num(s.diastolic)}`);
  }
  if (e.ecg) {
    t.ecg.state = e.ecg;
    // The analysis is of the batch just stored: it is current as it arrives.
    t.ecg.at = new Date().toISOString();
  }
  touch(t);
}

function alertEvent(t, e) {
  if (e.change === 'RAISED') {
    t.alerts.set(e.alertId, { id: e.alertId, kind: e.kind, priority: e.priority, raisedAt: e.at });
    announce(`${words(e.priority)} priority alarm for ${t.id}: ${words(e.kind)}`, e.priority === 'HIGH');
  } else if (e.change === 'RESOLVED') {
    t.alerts.delete(e.alertId);
  } else if (e.change === 'REANNOUNCED' || e.change === 'ESCALATED') {
    const a = t.alerts.get(e.alertId);
    if (a) a.escalated = e.change === 'ESCALATED';
  }
}

function drawCell(c, now) {
  const stale = isStale(c.at, now);
  const shown = stale ? 'no data' : c.text;
  if (c.shown !== shown) {
    c.value.textContent = stale ? '—' : c.text;
    c.el.classList.toggle('stale', stale);
    c.shown = shown;
  }
  const age = c.at === null ? 'no data' : stale ? `no data · last ${ago(c.at, now)}` : ago(c.at, now);
  if (c.age.textContent !== age) c.age.textContent = age;
  sparkline(c.canvas, c.points, { spanMs: SPARK_MS, now, stale });
}

function draw(t, now) {
  drawCell(t.hr, now);
  drawCell(t.spo2, now);
  drawCell(t.bp, now);
  const e = t.ecg;
  const stale = isStale(e.at, now);
  const s = e.state;
  const hrText = !stale && s && typeof s.heartRate === 'number' ? num(s.heartRate) : '—';
  if (e.value.textContent !== hrText) e.value.textContent = hrText;
  let rhythmText = 'no data';
  if (!stale && s) rhythmText = s.quality && s.quality !== 'GOOD' ? `${words(s.rhythm || 'UNKNOWN')} (${words(s.quality)} signal)` : words(s.rhythm || 'UNKNOWN');
  if (e.rhythm.textContent !== rhythmText) e.rhythm.textContent = rhythmText;
  e.value.closest('.vital').classList.toggle('stale', stale);
  const a = newest(t);
  const key = a ? `${a.id}:${a.escalated ? 1 : 0}` : t.error || '';
  if (t.drawnAlarm !== key) {
    t.drawnAlarm = key;
    fill(t.alarm, t.error ? h('span', { class: 'notice notice-error' }, t.error) : alarmBadge(a));
    t.el.className = `tile ${a ? priorityClass(a.priority) + '-tile' : ''}`;
    const n = t.alerts.size;
    t.more.textContent = n > 1 ? ` ${n} open alarms` : '';
  }
}
