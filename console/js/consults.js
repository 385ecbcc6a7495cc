// Consults: the clinician's queue (`me { consults(status: [REQUESTED,
// WAITING, IN_PROGRESS]) }`: waiting for me, in progress) and one consult's
// page, shared with patients: its live chat (`consultEvents` from the last
// message seen, `sendMessage` with a fresh clientMessageId per message, kept
// across retries), join, end with notes, cancel.

import { h, fill, clock, dateTime, explain, words, announce, uuid, notice } from './ui.js';

const QUEUE = `{ me { consults(status: [REQUESTED, WAITING, IN_PROGRESS], first: 100) {
  nodes { id status patientId clinicianId requestedAt startedAt } } } }`;
const CONSULT = `query($c: ID!) { consult(id: $c) { id status patientId clinicianId reason notes requestedAt startedAt endedAt } }`;
const MESSAGES = `query($c: ID!, $after: String) { consult(id: $c) { messages(first: 200, after: $after) {
  nodes { seq authorRole authorId clientMessageId text at } pageInfo { hasNextPage endCursor } } } }`;
const EVENTS = `subscription($c: ID!, $after: Int) { consultEvents(consultId: $c, afterMessage: $after) {
  seq kind at message { seq authorRole authorId clientMessageId text at } } }`;
const SEND = `mutation($c: ID!, $m: String!, $t: String!) { sendMessage(consultId: $c, clientMessageId: $m, text: $t) }`;
const JOIN = `mutation($c: ID!) { joinConsult(id: $c) }`;
const END = `mutation($c: ID!, $n: String!) { endConsult(id: $c, notes: $n) }`;
const CANCEL = `mutation($c: ID!) { cancelConsult(id: $c) }`;

const OPEN = ['REQUESTED', 'WAITING', 'IN_PROGRESS'];

/** The clinician's queue. */
export function mount(root, session) {
  const status = h('p', { role: 'status', class: 'muted' }, 'Loading…');
  const waiting = h('ul', { class: 'queue', id: 'queue-waiting' });
  const mine = h('ul', { class: 'queue', id: 'queue-mine' });
  fill(
    root,
    h('h1', {}, 'Consults'),
    status,
    h('section', { 'aria-labelledby': 'q-wait' }, h('h2', { id: 'q-wait' }, 'Waiting for me'), waiting),
    h('section', { 'aria-labelledby': 'q-mine' }, h('h2', { id: 'q-mine' }, 'In progress'), mine),
  );
  let gone = false;
  let seen = null;
  const load = async () => {
    try {
      const d = await session.q(QUEUE);
      if (gone) return;
      const list = d.me.consults.nodes;
      const me = session.me.subject;
      const w = list.filter((c) => c.status !== 'IN_PROGRESS');
      const m = list.filter((c) => c.status === 'IN_PROGRESS' && c.clinicianId === me);
      fill(waiting, w.length ? w.map((c) => item(session, c, load)) : h('li', { class: 'muted' }, 'No consult is waiting.'));
      fill(mine, m.length ? m.map((c) => item(session, c, load)) : h('li', { class: 'muted' }, 'None in progress.'));
      status.textContent = `Updated ${clock(Date.now())}.`;
      const ids = new Set(w.map((c) => c.id));
      if (seen) for (const id of ids) if (!seen.has(id)) announce('A new consult is waiting');
      seen = ids;
    } catch (e) {
      status.textContent = `Could not load consults: ${explain(e)}`;
    }
  };
  load();
  // New requests have no subscription of their own: the queue is read again.
  const timer = setInterval(load, 5000);
  return () => {
    gone = true;
    clearInterval(timer);
  };
}

function item(session, c, reload) {
  const open = h('button', { type: 'button', onclick: () => session.go('consult', { id: c.id }) }, 'Open');
  // A clinician joins once the patient is in the waiting room (WAITING).
  const join = c.status !== 'WAITING'
    ? c.status === 'REQUESTED' ? h('span', { class: 'muted' }, 'the patient is not in the waiting room yet') : null
    : h('button', {
      type: 'button',
      class: 'primary',
      onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          await session.q(JOIN, { c: c.id });
          session.go('consult', { id: c.id });
        } catch (e) {
          ev.target.disabled = false;
          ev.target.after(h('span', { class: 'notice notice-error' }, explain(e)));
          reload();
        }
      },
    }, 'Join');
  return h(
    'li',
    { 'data-consult': c.id },
    h('span', { class: `status status-${c.status.toLowerCase()}` }, words(c.status)),
    ` Patient ${c.patientId || '—'} · requested ${dateTime(c.requestedAt)}`,
    c.startedAt ? ` · started ${clock(c.startedAt)}` : '',
    ' ',
    join,
    open,
  );
}

/** One consult: its chat and its actions. */
export function mountConsult(root, session, state) {
  const id = state.id;
  const me = session.me;
  const clinician = me.role === 'CLINICIAN';
  const head = h('h1', {}, 'Consult');
  const info = h('p', { class: 'muted' });
  const reason = h('p', { class: 'reason' });
  const actions = h('div', { class: 'toolbar' });
  const log = h('ol', { class: 'chat', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages' });
  const text = h('textarea', { id: 'chat-text', rows: 2, maxlength: 4000, required: true });
  const sendButton = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const sendStatus = h('p', { role: 'status', class: 'muted' });
  const form = h('form', { class: 'chat-form' }, h('label', { for: 'chat-text' }, 'Message'), text, sendButton, sendStatus);
  const back = h('button', { type: 'button', onclick: () => history.back() }, '← Back');
  fill(root, h('div', { class: 'toolbar' }, back, head), info, reason, log, form, actions);
  let last = 0;
  let current = null;
  let pendingId = null;
  let gone = false;
  let stop = null;
  const vars = { c: id, after: 0 };

  const addMessage = (m) => {
    if (!m || m.seq <= last) return;
    last = m.seq;
    vars.after = last; // a reconnect resumes after the last message seen
    const mine = m.authorId === me.subject;
    log.append(
      h(
        'li',
        { class: mine ? 'mine' : 'theirs', 'data-seq': m.seq },
        h('span', { class: 'author' }, mine ? 'You' : `${words(m.authorRole)} ${m.authorId}`),
        h('time', { datetime: m.at }, clock(m.at)),
        h('p', {}, m.text),
      ),
    );
    log.scrollTop = log.scrollHeight;
    if (!mine) announce(`New message from ${words(m.authorRole)}`);
  };

  const renderState = (c) => {
    current = c;
    head.textContent = `Consult with ${clinician ? `patient ${c.patientId || ''}` : c.clinicianId ? `clinician ${c.clinicianId}` : 'a clinician'}`;
    info.textContent = `${words(c.status)} · requested ${dateTime(c.requestedAt)}${c.startedAt ? ` · started ${dateTime(c.startedAt)}` : ''}${c.endedAt ? ` · ended ${dateTime(c.endedAt)}` : ''}`;
    info.dataset.status = c.status;
    reason.textContent = c.reason ? `Reason: ${c.reason}` : '';
    const buttons = [];
    const open = OPEN.includes(c.status);
    if (clinician && c.status === 'WAITING') buttons.push(action('Join', 'primary', () => session.q(JOIN, { c: id })));
    if (clinician && c.status === 'REQUESTED') buttons.push(h('span', { class: 'muted' }, 'The patient is not in the waiting room yet.'));
    if (!clinician && c.status === 'WAITING') buttons.push(h('span', { class: 'muted' }, 'You are in the waiting room: a clinician will join.'));
    if (clinician && c.status === 'IN_PROGRESS' && c.clinicianId === me.subject) buttons.push(endForm());
    if (open && c.status !== 'IN_PROGRESS') buttons.push(action('Cancel consult', 'danger', () => session.q(CANCEL, { c: id })));
    if (!open && c.notes) buttons.push(h('p', {}, `Notes: ${c.notes}`));
    fill(actions, buttons);
    form.hidden = !open;
  };

  const action = (label, cls, run) => {
    const msg = h('span', { role: 'status' });
    const b = h('button', {
      type: 'button',
      class: cls,
      onclick: async () => {
        b.disabled = true;
        try {
          await run();
          await refresh();
        } catch (e) {
          notice(msg, explain(e), 'error');
          b.disabled = false;
        }
      },
    }, label);
    return h('span', {}, b, msg);
  };

  const endForm = () => {
    const notes = h('textarea', { id: 'end-notes', rows: 2, required: true, maxlength: 4000 });
    const msg = h('span', { role: 'status' });
    const f = h('form', { class: 'end' }, h('label', { for: 'end-notes' }, 'Notes for the record'), notes, h('button', { type: 'submit', class: 'danger' }, 'End consult'), msg);
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!notes.value.trim()) return;
      try {
        await session.q(END, { c: id, n: notes.value.trim() });
        await refresh();
      } catch (e) {
        notice(msg, explain(e), 'error');
      }
    });
    return f;
  };

  let entered = false;
  const refresh = async () => {
    const d = await session.q(CONSULT, { c: id });
    if (gone) return;
    renderState(d.consult);
    // A patient who opens their requested consult enters its waiting room.
    if (!clinician && d.consult.status === 'REQUESTED' && !entered) {
      entered = true;
      await session.q(JOIN, { c: id });
      await refresh();
    }
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = text.value.trim();
    if (!t) return;
    // The same id until it is stored: a retry is not a second message.
    pendingId = pendingId || uuid();
    sendButton.disabled = true;
    try {
      await session.q(SEND, { c: id, m: pendingId, t });
      pendingId = null;
      text.value = '';
      notice(sendStatus, '', 'info');
    } catch (e) {
      notice(sendStatus, `Not sent: ${explain(e)}`, 'error');
    } finally {
      sendButton.disabled = false;
      text.focus();
    }
  });
  text.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });

  (async () => {
    try {
      await refresh();
      let after = null;
      for (;;) {
        const d = await session.q(MESSAGES, { c: id, after });
        if (gone) return;
        for (const m of d.consult.messages.nodes) addMessage(m);
        if (!d.consult.messages.pageInfo.hasNextPage) break;
        after = d.consult.messages.pageInfo.endCursor;
      }
      if (gone) return;
      stop = session.live.subscribe(EVENTS, vars, {
        next: (d) => {
          const e = d.consultEvents;
          if (e.message) addMessage(e.message);
          if (e.kind !== 'CHATTED') refresh().catch(() => {});
        },
        error: (e) => notice(sendStatus, `Live chat: ${explain(e)}`, 'error'),
        complete: () => refresh().catch(() => {}),
      });
    } catch (e) {
      fill(root, h('p', { class: 'notice notice-error refused', role: 'alert' }, `Could not open the consult: ${explain(e)}`));
    }
  })();

  return () => {
    gone = true;
    if (stop) stop();
  };
}
