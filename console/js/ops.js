// Ops: the cluster (nodes, status, last seen, shards owned, the shard map),
// the supervision tree of every node (`supervisionTree(node: "*")`, kept
// live by `supervisionEvents`): restarts, status, last failure, mailbox
// depth; collapsible, searchable, filterable by kind; restart an actor after
// a confirmation. Dead letters with their reasons, and the node's own
// metric series as small charts.

import { h, fill, ago, clock, dateTime, explain, words, confirmDialog, notice } from './ui.js';
import { lineChart } from './charts.js';

const CLUSTER = `{ cluster { node nodes { id addr status lastSeen shards } shards { id owner epoch } } }`;
const TREE = `{ supervisionTree(node: "*") { node path parent kind id status restarts lastFailure mailboxDepth } }`;
const EVENTS = `subscription { supervisionEvents { node at path event reason } }`;
const RESTART = `mutation($p: String!) { restartActor(path: $p) }`;
const DEAD = `query($after: String) { deadLetters(first: 50, after: $after) { nodes { id at topic reason } pageInfo { hasNextPage endCursor } } }`;
const METRICS = `{ metrics(window: 900) { name unit node points { at value } } }`;

export function mount(root, session) {
  const stops = [];
  const timers = [];
  let gone = false;
  const cluster = clusterSection(session);
  const tree = treeSection(session);
  const metrics = metricsSection(session);
  const dead = deadSection(session);
  fill(root, h('h1', {}, 'Operations'), cluster.el, tree.el, metrics.el, dead.el);
  const loadAll = () => {
    if (gone) return;
    cluster.load();
    tree.load();
  };
  loadAll();
  metrics.load();
  dead.load();
  timers.push(setInterval(loadAll, 10000), setInterval(() => metrics.load(), 15000));
  stops.push(
    session.live.subscribe(EVENTS, {}, {
      next: (d) => tree.event(d.supervisionEvents),
      error: (e) => tree.note(`Live events: ${explain(e)}`),
    }),
  );
  return () => {
    gone = true;
    for (const t of timers) clearInterval(t);
    for (const s of stops) s();
  };
}

function clusterSection(session) {
  const status = h('p', { role: 'status', class: 'muted' });
  const body = h('tbody');
  const map = h('div', { class: 'shardmap', role: 'img', 'aria-label': 'Shard map' });
  const legend = h('ul', { class: 'legend' });
  const el = h(
    'section',
    { 'aria-labelledby': 'h-cluster' },
    h('h2', { id: 'h-cluster' }, 'Cluster'),
    status,
    h('table', { class: 'nodes' }, h('thead', {}, h('tr', {}, ['Node', 'Address', 'Status', 'Last seen', 'Shards'].map((c) => h('th', { scope: 'col' }, c)))), body),
    h('h3', {}, 'Shard map'),
    map,
    legend,
  );
  const load = async () => {
    try {
      const d = (await session.q(CLUSTER)).cluster;
      const owners = [...new Set(d.nodes.map((n) => n.id).concat(d.shards.map((s) => s.owner).filter(Boolean)))].sort();
      const hue = (o) => (o ? `owner-${owners.indexOf(o) % 8}` : 'owner-none');
      fill(
        body,
        d.nodes.map((n) =>
          h(
            'tr',
            { 'data-node': n.id },
            h('th', { scope: 'row' }, n.id, n.id === d.node ? ' (this node)' : ''),
            h('td', {}, n.addr),
            h('td', {}, h('span', { class: `status node-${String(n.status).toLowerCase()}` }, words(n.status))),
            h('td', {}, h('time', { datetime: n.lastSeen, title: dateTime(n.lastSeen) }, ago(n.lastSeen))),
            h('td', {}, String(n.shards)),
          )),
      );
      fill(
        map,
        d.shards.map((s) => h('span', { class: `shard ${hue(s.owner)}`, title: `shard ${s.id}: ${s.owner || 'unowned'} (epoch ${s.epoch})` })),
      );
      const counts = new Map();
      for (const s of d.shards) counts.set(s.owner || 'unowned', (counts.get(s.owner || 'unowned') || 0) + 1);
      map.setAttribute('aria-label', `Shard map: ${[...counts].map(([o, n]) => `${o} ${n}`).join(', ')}`);
      fill(legend, [...counts].map(([o, n]) => h('li', {}, h('span', { class: `shard ${hue(o === 'unowned' ? null : o)}`, 'aria-hidden': 'true' }), ` ${o}: ${n} shards`)));
      status.textContent = `${d.nodes.length} node${d.nodes.length === 1 ? '' : 's'}, ${d.shards.length} shards · updated ${clock(Date.now())}`;
    } catch (e) {
      status.textContent = `Cluster: ${explain(e)}`;
    }
  };
  return { el, load };
}

/** Paths under this prefix are entity actors, which restartActor takes. */
const ENTITIES = /^\/cardio\/entities\/[^/]+\/[^/#][^/]*$/;

function treeSection(session) {
  const status = h('p', { role: 'status', class: 'muted' });
  const search = h('input', { type: 'search', id: 'tree-search', placeholder: 'Search paths', 'aria-label': 'Search actor paths' });
  const kind = h('select', { id: 'tree-kind', 'aria-label': 'Filter by kind' }, h('option', { value: '' }, 'All kinds'));
  const failedOnly = h('input', { type: 'checkbox', id: 'tree-restarted' });
  const box = h('div', { class: 'tree' });
  const events = h('ol', { class: 'events', 'aria-label': 'Recent supervision events' });
  const el = h(
    'section',
    { 'aria-labelledby': 'h-tree' },
    h('h2', { id: 'h-tree' }, 'Supervision trees'),
    h('div', { class: 'toolbar' }, search, kind, h('label', { for: 'tree-restarted', class: 'check' }, failedOnly, ' Restarted or failed only')),
    status,
    box,
    h('h3', {}, 'Recent events'),
    events,
    h('p', { class: 'muted events-none' }, 'No supervision event since this page opened.'),
  );
  let rows = [];
  let drawn = '';
  const closed = new Set(); // paths the user collapsed
  let reloadSoon = null;

  const render = () => {
    const q = search.value.trim().toLowerCase();
    const k = kind.value;
    const troubled = failedOnly.checked;
    const byParent = new Map();
    for (const r of rows) {
      const key = `${r.node}\u0000${r.parent || ''}`;
      if (!byParent.has(key)) byParent.set(key, []);
      byParent.get(key).push(r);
    }
    const filtering = q || k || troubled;
    const matches = (r) =>
      (!q || r.path.toLowerCase().includes(q)) && (!k || r.kind === k) && (!troubled || r.restarts > 0 || r.status === 'FAILED' || r.lastFailure);
    // Whether a subtree holds a match (so its ancestors are shown).
    const holds = new Map();
    const visit = (r) => {
      const kids = byParent.get(`${r.node}\u0000${r.path}`) || [];
      let any = matches(r);
      for (const c of kids) any = visit(c) || any;
      holds.set(`${r.node}\u0000${r.path}`, any);
      return any;
    };
    const roots = rows.filter((r) => !r.parent);
    for (const r of roots) visit(r);
    const item = (r) => {
      const key = `${r.node}\u0000${r.path}`;
      if (filtering && !holds.get(key)) return null;
      const kids = (byParent.get(key) || []).slice().sort((a, b) => a.path.localeCompare(b.path));
      const line = h(
        'span',
        { class: 'actor' },
        h('span', { class: 'name' }, r.parent ? r.path.slice(r.parent.length).replace(/^\//, '') || r.path : `${r.node} ${r.path}`),
        h('span', { class: 'kind' }, r.kind),
        h('span', { class: `status actor-${String(r.status).toLowerCase()}` }, words(r.status)),
        h('span', { class: `restarts${r.restarts > 0 ? ' restarted' : ''}`, 'data-restarts': r.restarts }, `restarts ${r.restarts}`),
        h('span', { class: 'mailbox' }, `mailbox ${r.mailboxDepth}`),
        r.lastFailure ? h('span', { class: 'failure' }, `last failure: ${r.lastFailure}`) : null,
        ENTITIES.test(r.path) ? h('button', { type: 'button', class: 'small', 'data-restart': r.path, onclick: (ev) => restart(ev, r) }, 'Restart') : null,
      );
      if (!kids.length) return h('li', { 'data-path': r.path, 'data-node': r.node }, line);
      const det = h('details', { open: !closed.has(key) || filtering }, h('summary', {}, line), h('ul', {}, kids.map(item)));
      det.addEventListener('toggle', () => {
        if (det.open) closed.delete(key);
        else closed.add(key);
      });
      return h('li', { 'data-path': r.path, 'data-node': r.node }, det);
    };
    fill(box, h('ul', { class: 'tree-root' }, roots.map(item)));
  };

  const restart = async (ev, r) => {
    ev.preventDefault();
    ev.stopPropagation();
    const sure = await confirmDialog('Restart this actor?', `${r.path} on ${r.node} stops now and starts again from its journal on its next message.`, 'Restart');
    if (!sure) return;
    try {
      await session.q(RESTART, { p: r.path });
      note(`Restart of ${r.path} asked.`);
      soon();
    } catch (e) {
      note(`Restart refused: ${explain(e)}`);
    }
  };

  const note = (text) => notice(status, text, 'info');

  const load = async () => {
    try {
      rows = (await session.q(TREE)).supervisionTree;
      const sig = JSON.stringify(rows);
      if (sig === drawn) {
        status.textContent = status.textContent.replace(/updated .*/, `updated ${clock(Date.now())}`);
        return;
      }
      drawn = sig;
      const kinds = [...new Set(rows.map((r) => r.kind))].sort();
      const chosen = kind.value;
      fill(kind, h('option', { value: '' }, 'All kinds'), kinds.map((k) => h('option', { value: k, selected: k === chosen }, k)));
      render();
      const nodes = new Set(rows.map((r) => r.node)).size;
      status.textContent = `${rows.length} actors and supervisors on ${nodes} node${nodes === 1 ? '' : 's'} · updated ${clock(Date.now())}`;
    } catch (e) {
      status.textContent = `Tree: ${explain(e)}`;
    }
  };
  const soon = () => {
    clearTimeout(reloadSoon);
    reloadSoon = setTimeout(load, 500);
  };
  search.addEventListener('input', render);
  kind.addEventListener('change', render);
  failedOnly.addEventListener('change', render);

  const event = (e) => {
    events.prepend(
      h(
        'li',
        { class: `ev ev-${String(e.event).toLowerCase()}` },
        h('time', { datetime: e.at }, clock(e.at)),
        ` ${e.node} ${e.path} `,
        h('strong', {}, words(e.event)),
        e.reason ? ` — ${e.reason}` : '',
      ),
    );
    while (events.children.length > 50) events.lastChild.remove();
    soon();
  };
  return { el, load, event, note };
}

function metricsSection(session) {
  const status = h('p', { role: 'status', class: 'muted' });
  const grid = h('div', { class: 'metrics' });
  const el = h('section', { 'aria-labelledby': 'h-metrics' }, h('h2', { id: 'h-metrics' }, 'Metrics (last 15 min)'), status, grid);
  const charts = new Map();
  const load = async () => {
    try {
      const series = (await session.q(METRICS)).metrics;
      status.textContent = series.length ? '' : 'No series yet.';
      for (const s of series) {
        const key = `${s.node} ${s.name}`;
        let c = charts.get(key);
        if (!c) {
          const canvas = h('canvas', { class: 'metric', width: 300, height: 110, role: 'img' });
          const latest = h('span', { class: 'latest' });
          const fig = h('figure', { 'data-metric': s.name }, h('figcaption', {}, `${words(s.name)} · ${s.node} `, latest), canvas);
          grid.append(fig);
          c = { canvas, latest };
          charts.set(key, c);
        }
        const pts = s.points.map((p) => ({ t: Date.parse(p.at), mean: p.value, min: p.value, max: p.value }));
        const to = Date.now();
        // A node younger than the window: from its first point.
        const from = pts.length ? Math.max(to - 900_000, Math.min(pts[0].t, to - 60_000)) : to - 900_000;
        const text = lineChart(c.canvas, pts, { from, to, unit: s.unit, label: words(s.name) });
        c.canvas.setAttribute('aria-label', text);
        const last = pts.length ? pts[pts.length - 1].mean : null;
        c.latest.textContent = last === null ? 'no data' : `now ${Math.round(last * 100) / 100} ${s.unit}`;
      }
    } catch (e) {
      status.textContent = `Metrics: ${explain(e)}`;
    }
  };
  return { el, load };
}

function deadSection(session) {
  const status = h('p', { role: 'status', class: 'muted' });
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'More');
  const el = h(
    'section',
    { 'aria-labelledby': 'h-dead' },
    h('h2', { id: 'h-dead' }, 'Dead letters'),
    status,
    h('table', { class: 'dead' }, h('thead', {}, h('tr', {}, ['When', 'Topic', 'Reason'].map((c) => h('th', { scope: 'col' }, c)))), body),
    more,
  );
  let cursor = null;
  const load = async (next = false) => {
    try {
      const d = (await session.q(DEAD, { after: next ? cursor : null })).deadLetters;
      if (!next) body.replaceChildren();
      for (const x of d.nodes) body.append(h('tr', {}, h('td', {}, dateTime(x.at)), h('td', {}, x.topic), h('td', {}, x.reason)));
      cursor = d.pageInfo.endCursor;
      more.hidden = !d.pageInfo.hasNextPage;
      status.textContent = body.children.length ? '' : 'No dead letters.';
    } catch (e) {
      status.textContent = `Dead letters: ${explain(e)}`;
    }
  };
  more.addEventListener('click', () => load(true));
  return { el, load: () => load(false) };
}
