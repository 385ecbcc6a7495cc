// Ops in the console: the cluster and the supervision trees; an actor
// restarted from the tree after a confirmation; a crashing actor's restart
// count going up in the tree, live.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as H from './lib/harness.mjs';

test('ops see a supervised actor restart count go up after a crash', { timeout: 120_000 }, async (t) => {
  const node = await H.startNode();
  t.after(() => node.cleanup());
  const devices = await H.seed(node, { patients: ['p-1'], clinicians: ['dr-1'], teams: [['p-1', 'dr-1']] });
  const device = devices['p-1'];
  const patient = H.token('patient', 'p-1');
  const hr = (at, value) => ({ metric: 'HEART_RATE', at: H.iso(at), value });
  const t0 = Date.now() - 60_000;
  await H.gql(node, patient, H.PUSH, { d: device, s: [hr(t0, 70)] });
  const path = `/cardio/entities/device/${device}`;

  const b = await H.browser();
  t.after(() => b.close());
  const page = await H.newPage(b);
  await page.goto(`${node.url}/#token=${H.token('ops', 'ops-1')}`);
  await page.getByRole('heading', { name: 'Supervision trees' }).waitFor();
  await page.locator('.tree [data-path="/cardio"]').first().waitFor();
  assert.ok(!page.url().includes('token'), `the token left the address bar: ${page.url()}`);
  await page.getByRole('link', { name: 'Operations' }).waitFor();
  // The cluster: this node, alive, with its shards.
  await page.locator('table.nodes tr[data-node="cardio-1"]').waitFor();
  await H.shot(page, 'ops', '1-signed-in');

  // Searching the tree narrows it to the device.
  await page.fill('#tree-search', device);
  const row = page.locator(`.tree li[data-path="${path}"]`);
  await row.waitFor();
  assert.equal(await row.locator('.restarts').getAttribute('data-restarts'), '0');
  await H.shot(page, 'ops', '2-searched');

  // Restart from the tree: a confirmation first (cancel does nothing).
  await row.getByRole('button', { name: 'Restart' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  await H.shot(page, 'ops', '3-confirm');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'detached' });
  await row.getByRole('button', { name: 'Restart' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Restart' }).click();
  // It passivates: gone from the tree until its next message.
  await row.waitFor({ state: 'detached', timeout: 15_000 });

  // Its snapshots become unreadable (a database fault): the device crashes
  // when it starts again, and its supervisor restarts it.
  const db = `${node.dir}/data/cardio.db`;
  execFileSync('sqlite3', [db, 'ALTER TABLE snapshots RENAME TO snapshots_away'], { timeout: 10_000 });
  const failed = await H.gqlRaw(node, patient, H.PUSH, { d: device, s: [hr(t0 + 1000, 71)] });
  assert.ok(failed.errors, JSON.stringify(failed));
  execFileSync('sqlite3', [db, 'ALTER TABLE snapshots_away RENAME TO snapshots'], { timeout: 10_000 });
  // Seen in the console without a reload (supervisionEvents).
  await page.waitForFunction(
    (p) => {
      const el = document.querySelector(`.tree li[data-path="${p}"] .restarts`);
      return el && Number(el.dataset.restarts) >= 1;
    },
    path,
    { timeout: 20_000 },
  );
  const restarted = page.locator(`.tree li[data-path="${path}"]`);
  assert.match(await restarted.locator('.failure').textContent(), /snapshot unreadable/);
  // The recent events name the crash.
  await page.locator('.events li', { hasText: path }).first().waitFor();
  await H.shot(page, 'ops', '4-restarted');
  // The device serves again.
  await H.until('the device to recover', async () => !(await H.gqlRaw(node, patient, H.PUSH, { d: device, s: [hr(t0 + 2000, 72)] })).errors);
  assert.deepEqual(page.problems.filter((p) => !p.includes('favicon')), []);
});
