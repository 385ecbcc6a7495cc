// What the browser tests share: a real `cardio serve` (the debug binary
// cargo built) in a temporary directory on a free port with the embedded
// defaults, tokens minted with `cardio token`, GraphQL over HTTP for
// seeding and for the other side of a conversation, and headless Chromium
// (Debian's /usr/bin/chromium) driven by playwright-core.
//
// Every node has a bounded life: killed when its test ends (pass or fail),
// by a watchdog after `lifetimeMs`, and when this process exits.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = process.env.CARDIO_BIN || path.join(ROOT, 'target/debug/cardio');
export const ARTIFACTS = path.join(ROOT, 'target/browser-artifacts');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const SECRET = 'browser-test-secret-of-at-least-32-bytes!!';

const live = new Set();
process.on('exit', () => {
  for (const n of live) n.kill();
});

/**
 * Starts `cardio serve` (or `command`: `demo`) in a fresh temporary
 * directory (its data directory: SQLite, in-process bus), with `env` on top
 * of a clean environment. `secret: false` starts it with no key configured
 * (the first run). `dir` starts it again on the data of an earlier node.
 */
export async function startNode({ env = {}, secret = true, command = 'serve', dir = null, lifetimeMs = 240_000, readyMs = 60_000 } = {}) {
  dir = dir || mkdtempSync(path.join(tmpdir(), 'cardio-browser-'));
  const base = {
    PATH: process.env.PATH,
    HOME: dir,
    CARDIO_HTTP_ADDR: '127.0.0.1:0',
    CARDIO_LOG_FORMAT: 'json',
  };
  if (secret) base.CARDIO_JWT_SECRET = SECRET;
  const proc = spawn(BIN, [command], { cwd: dir, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const node = {
    dir,
    proc,
    pid: proc.pid,
    out: [],
    err: [],
    url: null,
    kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      clearTimeout(watchdog);
      live.delete(node);
    },
    cleanup() {
      node.kill();
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch (e) {
        /* best effort */
      }
    },
    /** Everything it printed on stderr (the terminal lines) so far. */
    stderr: () => node.err.join(''),
    stdout: () => node.out.join(''),
  };
  live.add(node);
  const watchdog = setTimeout(() => {
    console.error(`cardio (pid ${proc.pid}) outlived its ${lifetimeMs} ms: killed`);
    node.kill();
  }, lifetimeMs);
  watchdog.unref();
  const listening = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cardio did not listen within ${readyMs} ms:\n${node.stdout()}\n${node.stderr()}`)), readyMs);
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    let buf = '';
    proc.stdout.on('data', (chunk) => {
      node.out.push(chunk);
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!node.url && line.includes('"listening"')) {
          try {
            const v = JSON.parse(line);
            node.addr = v.addr;
            node.url = `http://${v.addr}`;
            clearTimeout(timer);
            resolve();
          } catch (e) {
            /* not JSON: keep looking */
          }
        }
      }
    });
    proc.stderr.on('data', (chunk) => node.err.push(chunk));
    proc.on('exit', (code, sig) => {
      clearTimeout(timer);
      if (!node.url) reject(new Error(`cardio exited (${code ?? sig}) before listening:\n${node.stdout()}\n${node.stderr()}`));
    });
  });
  try {
    await listening;
  } catch (e) {
    node.cleanup();
    throw e;
  }
  return node;
}

/** The sign-in links a node printed on stdout (JSON lines `{"sign_in": …}`), by role. */
export function signInLinks(node) {
  const links = {};
  for (const line of node.stdout().split('\n')) {
    try {
      const v = JSON.parse(line);
      if (v.sign_in && v.sign_in.url) links[v.sign_in.role] = v.sign_in.url;
    } catch (e) {
      /* a log line cut in two, or not JSON */
    }
  }
  return links;
}

/** A token minted by `cardio token` with the test key. */
export function token(role, sub, ttl = '1h', env = { CARDIO_JWT_SECRET: SECRET }) {
  return execFileSync(BIN, ['token', '--role', role, '--sub', sub, '--ttl', ttl], {
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  }).trim();
}

/** POSTs a GraphQL operation; the whole answer ({data, errors}). */
export async function gqlRaw(node, tok, query, variables = {}) {
  const res = await fetch(`${node.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${tok}` },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(30_000),
  });
  return res.json();
}

/** The data of a successful answer (an error fails the test). */
export async function gql(node, tok, query, variables = {}) {
  const v = await gqlRaw(node, tok, query, variables);
  if (v.errors) throw new Error(`${query.slice(0, 80)}: ${JSON.stringify(v.errors)}`);
  return v.data;
}

/** Patients, clinicians, care teams and one device per patient; the device ids. */
export async function seed(node, { patients, clinicians, teams, deviceKind = 'bedside-monitor' }) {
  const admin = token('admin', 'admin-seed');
  for (const p of patients) await gql(node, admin, 'mutation($id: ID!) { registerPatient(id: $id) }', { id: p });
  for (const c of clinicians) await gql(node, admin, 'mutation($id: ID!) { registerClinician(id: $id) }', { id: c });
  for (const [p, c] of teams) await gql(node, admin, 'mutation($p: ID!, $c: ID!) { assignClinician(patientId: $p, clinicianId: $c) }', { p, c });
  const devices = {};
  for (const p of patients) {
    const d = await gql(node, admin, 'mutation($p: ID!, $k: String!) { registerDevice(patientId: $p, kind: $k) }', { p, k: deviceKind });
    devices[p] = d.registerDevice;
  }
  return devices;
}

export const PUSH = 'mutation($d: ID!, $s: [SampleInput!]!) { pushSamples(deviceId: $d, samples: $s) { accepted rejections { index reason message } } }';

export const iso = (ms) => new Date(ms).toISOString();

/** Polls `f` until it returns a truthy value, or fails after `ms`. */
export async function until(what, f, ms = 15_000, every = 200) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Headless Chromium and a page; console errors and failed requests are kept. */
export async function browser() {
  const b = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
    timeout: 60_000,
  });
  return b;
}

export async function newPage(b, { width = 1400, height = 900 } = {}) {
  const context = await b.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.problems.push(`console: ${m.text()}`);
  });
  page.setDefaultTimeout(15_000);
  return page;
}

/** Saves a screenshot of a test step under target/browser-artifacts/. */
export async function shot(page, test, step) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${test}--${step}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

export function readJson(file) {
  return JSON.parse(readFileSync(file, 'utf8'));
}
