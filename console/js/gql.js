// The console's only way to the node: GraphQL over HTTP (POST /graphql with
// `Authorization: Bearer`) and graphql-transport-ws on the same path, the
// token in `connection_init`. The token is never put in a URL.

/** An answer with errors: the first one's code, reason and message. */
export class ApiError extends Error {
  constructor(errors, status) {
    const first = (errors && errors[0]) || {};
    super(first.message || `request failed (${status})`);
    this.errors = errors || [];
    this.status = status;
    this.code = (first.extensions && first.extensions.code) || (status === 401 ? 'UNAUTHENTICATED' : 'UNKNOWN');
    this.reason = (first.extensions && first.extensions.reason) || null;
  }
  get unauthenticated() {
    return this.code === 'UNAUTHENTICATED';
  }
}

/** POSTs one operation; resolves to its `data`, rejects with an ApiError. */
export async function request(token, query, variables = {}) {
  let res;
  try {
    res = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError([{ message: 'the node cannot be reached', extensions: { code: 'UNAVAILABLE' } }], 0);
  }
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    throw new ApiError([{ message: `the node answered ${res.status}`, extensions: { code: 'UNAVAILABLE' } }], res.status);
  }
  if (body.errors && body.errors.length) throw new ApiError(body.errors, res.status);
  if (!res.ok) throw new ApiError(null, res.status);
  return body.data;
}

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];

/**
 * One graphql-transport-ws connection shared by every subscription of the
 * page. It reconnects with backoff and subscribes again; before
 * reconnecting it asks `stillSignedIn()` (an HTTP `me`), and when that says
 * the token is no longer good it stops and calls `onSignedOut(error)`.
 */
export class Live {
  constructor(token, { stillSignedIn, onSignedOut, onState } = {}) {
    this.token = token;
    this.stillSignedIn = stillSignedIn || (async () => true);
    this.onSignedOut = onSignedOut || (() => {});
    this.onState = onState || (() => {});
    this.subs = new Map(); // id -> {payload, sink, active}
    this.nextId = 1;
    this.ws = null;
    this.acked = false;
    this.attempt = 0;
    this.closed = false;
    this.timer = null;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`;
    const ws = new WebSocket(url, 'graphql-transport-ws');
    this.ws = ws;
    this.acked = false;
    this.onState('connecting');
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${this.token}` } }));
    };
    ws.onmessage = (ev) => this.received(ev.data);
    ws.onclose = (ev) => this.lost(ws, ev);
  }

  received(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return;
    }
    switch (msg.type) {
      case 'connection_ack':
        this.acked = true;
        this.attempt = 0;
        this.onState('live');
        for (const [id, s] of this.subs) this.send({ id, type: 'subscribe', payload: s.payload });
        break;
      case 'ping':
        this.send({ type: 'pong' });
        break;
      case 'next': {
        const s = this.subs.get(msg.id);
        if (!s) break;
        const p = msg.payload || {};
        if (p.errors && p.errors.length) s.sink.error && s.sink.error(new ApiError(p.errors, 200));
        if (p.data) s.sink.next(p.data);
        break;
      }
      case 'error': {
        const s = this.subs.get(msg.id);
        if (!s) break;
        this.subs.delete(msg.id);
        s.sink.error && s.sink.error(new ApiError(msg.payload, 200));
        break;
      }
      case 'complete': {
        const s = this.subs.get(msg.id);
        if (!s) break;
        this.subs.delete(msg.id);
        s.sink.complete && s.sink.complete();
        break;
      }
      default:
        break;
    }
  }

  async lost(ws, ev) {
    if (ws !== this.ws || this.closed) return;
    this.ws = null;
    this.acked = false;
    this.onState('reconnecting');
    // Refused at init (1002 / 4401 / 4403) or closed by the node when the
    // token expired or was revoked: ask over HTTP whether it still holds.
    let verdict = true;
    try {
      verdict = await this.stillSignedIn();
    } catch (e) {
      verdict = e;
    }
    if (verdict !== true && verdict instanceof Error) {
      this.close();
      this.onSignedOut(verdict);
      return;
    }
    const wait = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    // Jitter, so that many consoles do not come back at the same instant.
    this.timer = setTimeout(() => this.connect(), wait / 2 + Math.random() * wait / 2);
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /**
   * Subscribes; `sink` has `next(data)`, and optionally `error(e)` and
   * `complete()`. Returns the function that unsubscribes.
   */
  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    const payload = { query, variables };
    this.subs.set(id, { payload, sink });
    if (this.acked) this.send({ id, type: 'subscribe', payload });
    return () => {
      if (this.subs.delete(id) && this.acked) this.send({ id, type: 'complete' });
    };
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.subs.clear();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'bye');
    }
  }
}
