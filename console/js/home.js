// A patient's own page (minimal): their devices, their consults (open ones
// lead to the chat), and requesting a consult (`requestConsult` with a
// requestId kept until the request is stored: a retry is not a second one).

import { h, fill, dateTime, explain, words, uuid, notice } from './ui.js';

const MINE = `{ me { subject patients { id devices { id kind } }
  consults(first: 50) { nodes { id status clinicianId requestedAt startedAt endedAt } } } }`;
const REQUEST = `mutation($p: ID!, $r: String!, $id: ID!) { requestConsult(patientId: $p, reason: $r, requestId: $id) }`;

export function mount(root, session) {
  const devices = h('ul', { id: 'my-devices' });
  const consults = h('ul', { class: 'queue', id: 'my-consults' });
  const status = h('p', { role: 'status', class: 'muted' }, 'Loading…');
  const reason = h('textarea', { id: 'consult-reason', rows: 3, maxlength: 2000, required: true });
  const sent = h('p', { role: 'status' });
  const form = h(
    'form',
    { class: 'request' },
    h('label', { for: 'consult-reason' }, 'What would you like to talk about?'),
    reason,
    h('button', { type: 'submit', class: 'primary' }, 'Request a consult'),
    sent,
  );
  fill(
    root,
    h('h1', {}, 'My care'),
    status,
    h('section', { 'aria-labelledby': 'h-dev' }, h('h2', { id: 'h-dev' }, 'My devices'), devices),
    h('section', { 'aria-labelledby': 'h-con' }, h('h2', { id: 'h-con' }, 'My consults'), consults),
    h('section', { 'aria-labelledby': 'h-req' }, h('h2', { id: 'h-req' }, 'Ask for a consult'), form),
  );
  let gone = false;
  let requestId = null;
  const load = async () => {
    try {
      const d = await session.q(MINE);
      if (gone) return;
      const self = d.me.patients[0];
      const devs = self ? self.devices : [];
      fill(devices, devs.length ? devs.map((x) => h('li', {}, `${x.kind} · ${x.id}`)) : h('li', { class: 'muted' }, 'No device registered.'));
      const list = d.me.consults.nodes;
      fill(
        consults,
        list.length
          ? list.map((c) =>
            h(
              'li',
              { 'data-consult': c.id },
              h('span', { class: `status status-${c.status.toLowerCase()}` }, words(c.status)),
              ` requested ${dateTime(c.requestedAt)}`,
              c.clinicianId ? ` · with ${c.clinicianId}` : '',
              ' ',
              h('button', { type: 'button', onclick: () => session.go('consult', { id: c.id }) }, 'Open'),
            ))
          : h('li', { class: 'muted' }, 'No consult yet.'),
      );
      status.textContent = '';
    } catch (e) {
      status.textContent = `Could not load: ${explain(e)}`;
    }
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = reason.value.trim();
    if (!r) return;
    requestId = requestId || uuid();
    try {
      const d = await session.q(REQUEST, { p: session.me.subject, r, id: requestId });
      requestId = null;
      reason.value = '';
      notice(sent, 'Requested: a clinician of your care team will join.', 'info');
      await load();
      session.go('consult', { id: d.requestConsult });
    } catch (e) {
      notice(sent, `Not sent: ${explain(e)}`, 'error');
    }
  });
  load();
  const timer = setInterval(load, 10000);
  return () => {
    gone = true;
    clearInterval(timer);
  };
}
