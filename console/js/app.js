// The console's shell: sign-in (a pasted token, or `/#token=<jwt>` read from
// the fragment and removed from the address bar), the token kept in
// sessionStorage (this tab only), the role from `me`, the views of that
// role, and the way back to sign-in when the token expires or is revoked.

import { request, Live } from './gql.js';
import { h, fill, notice, words } from './ui.js';
import * as wall from './wall.js';
import * as patient from './patient.js';
import * as consults from './consults.js';
import * as ops from './ops.js';
import * as home from './home.js';

const KEY = 'cardio.token';

/** The views each role sees: [route, label, module]. */
const VIEWS = {
  CLINICIAN: [
    ['wall', 'Patients', wall],
    ['consults', 'Consults', consults],
  ],
  OPS: [['ops', 'Operations', ops]],
  ADMIN: [['ops', 'Operations', ops]],
  PATIENT: [['home', 'My care', home]],
};
/** Views reached from another one (their state comes in history.state). */
const INNER = { patient, consult: consults };

let session = null;
let unmount = null;
let expiryTimer = null;

const main = () => document.getElementById('main');

/** Takes a token out of the fragment (`#token=…`), so it leaves no trace in the address bar. */
function tokenFromFragment() {
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (!m) return null;
  history.replaceState(null, '', location.pathname + location.search);
  try {
    return decodeURIComponent(m[1]).trim();
  } catch (e) {
    return null;
  }
}

function signInView(message, kind = 'info') {
  teardown();
  document.getElementById('nav').replaceChildren();
  document.getElementById('who').textContent = '';
  document.getElementById('link').textContent = '';
  document.getElementById('signout').hidden = true;
  const status = h('p', { id: 'signin-status', role: 'alert' });
  notice(status, message || '', kind);
  const field = h('textarea', {
    id: 'token',
    name: 'token',
    rows: 4,
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'token-help',
  });
  const form = h(
    'form',
    { class: 'signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in to cardio'),
    status,
    h('label', { for: 'token' }, 'Access token'),
    field,
    h(
      'p',
      { id: 'token-help', class: 'muted' },
      'Paste the bearer token you were given, or open the sign-in link printed by the node. ',
      'The token is kept for this tab only and never sent in a URL.',
    ),
    h('button', { type: 'submit' }, 'Sign in'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = field.value.trim();
    if (!t) return;
    start(t);
  });
  fill(main(), form);
  field.focus();
}

function teardown() {
  if (unmount) {
    try {
      unmount();
    } catch (e) {
      /* a view that failed to clean up must not keep the user signed in */
    }
    unmount = null;
  }
  if (session) {
    session.live.close();
    session = null;
  }
  clearTimeout(expiryTimer);
}

/** Back to sign-in, saying why (expired, revoked, refused). */
function signedOut(e) {
  sessionStorage.removeItem(KEY);
  let message = 'You were signed out.';
  if (e && e.reason === 'TOKEN_EXPIRED') message = 'Your session expired. Sign in again.';
  else if (e && e.reason === 'TOKEN_REVOKED') message = 'Your session was ended (token revoked or account deactivated). Sign in again.';
  else if (e && e.code === 'UNAUTHENTICATED') message = `The token was refused: ${e.message}. Sign in again.`;
  else if (e && e.message) message = e.message;
  signInView(message, 'error');
}

async function signOut() {
  const s = session;
  sessionStorage.removeItem(KEY);
  if (s) {
    // End the token on the node too (a logout); best effort.
    try {
      await request(s.token, 'mutation { revokeToken }');
    } catch (e) {
      /* already dead, or the node is away: the tab forgets it anyway */
    }
  }
  signInView('Signed out.', 'info');
}

async function start(token) {
  teardown();
  fill(main(), h('p', { class: 'muted' }, 'Signing in…'));
  let me;
  try {
    me = (await request(token, '{ me { subject role } }')).me;
  } catch (e) {
    if (e.unauthenticated) {
      signedOut(e);
    } else {
      signInView(`Could not sign in: ${e.message}`, 'error');
    }
    return;
  }
  sessionStorage.setItem(KEY, token);
  const stillSignedIn = async () => {
    try {
      await request(token, '{ me { subject } }');
      return true;
    } catch (e) {
      return e.unauthenticated ? e : true;
    }
  };
  const live = new Live(token, {
    stillSignedIn,
    onSignedOut: (e) => signedOut(e),
    onState: (state) => {
      const link = document.getElementById('link');
      link.textContent = state === 'live' ? 'Live' : state === 'connecting' ? 'Connecting…' : 'Reconnecting…';
      link.className = `link link-${state}`;
    },
  });
  session = {
    token,
    me,
    live,
    /** A query or mutation; an UNAUTHENTICATED answer signs out. */
    async q(query, variables) {
      try {
        return await request(token, query, variables);
      } catch (e) {
        if (e.unauthenticated && session && session.token === token) signedOut(e);
        throw e;
      }
    },
    go,
  };
  const exp = expiresAt(token);
  if (exp) {
    const left = exp - Date.now();
    if (left > 0 && left < 2 ** 31) {
      expiryTimer = setTimeout(() => signedOut({ reason: 'TOKEN_EXPIRED' }), left);
    }
  }
  document.getElementById('who').textContent = `${me.subject} · ${words(me.role)}`;
  const out = document.getElementById('signout');
  out.hidden = false;
  out.onclick = signOut;
  const views = VIEWS[me.role] || [];
  fill(
    document.getElementById('nav'),
    views.map(([route, label]) => h('a', { href: `#/${route}`, 'data-route': route }, label)),
  );
  const want = /^#\/(\w+)/.exec(location.hash);
  const first = want && views.some(([r]) => r === want[1]) ? want[1] : views[0] && views[0][0];
  if (!first) {
    fill(main(), h('p', {}, 'No view for this role.'));
    return;
  }
  history.replaceState({ view: first }, '', `#/${first}`);
  render({ view: first });
}

/** When a JWT expires (its `exp`, read without verifying: only for the timer). */
function expiresAt(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  } catch (e) {
    return null;
  }
}

/**
 * Opens a view. Ids (a patient's, a consult's) travel in history.state,
 * never in the address: a URL is no place for patient data.
 */
function go(view, params = {}) {
  const state = { view, ...params };
  history.pushState(state, '', `#/${view}`);
  render(state);
}

function render(state) {
  if (!session) return;
  if (unmount) {
    unmount();
    unmount = null;
  }
  const views = VIEWS[session.me.role] || [];
  const top = views.find(([r]) => r === state.view);
  const mod = top ? top[2] : INNER[state.view];
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === state.view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const root = main();
  root.replaceChildren();
  if (!mod) {
    fill(root, h('p', { role: 'alert' }, 'No such view.'));
    return;
  }
  const mount = mod === consults && state.view === 'consult' ? consults.mountConsult : mod.mount;
  unmount = mount(root, session, state) || null;
  root.focus({ preventScroll: true });
}

window.addEventListener('popstate', (ev) => {
  if (!session) return;
  const state = ev.state || { view: (/^#\/(\w+)/.exec(location.hash) || [])[1] };
  render(state);
});

window.addEventListener('hashchange', () => {
  const t = tokenFromFragment();
  if (t) {
    start(t);
    return;
  }
  // Moving between views by a link fires popstate first, which renders.
});

const fromLink = tokenFromFragment();
const kept = sessionStorage.getItem(KEY);
if (fromLink) start(fromLink);
else if (kept) start(kept);
else signInView('');
