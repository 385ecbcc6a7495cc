// The console's WebSocket client: when the node goes away and comes back
// (killed, started again on the same address and data), the page
// reconnects with backoff and subscribes again, with no reload.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

test('the wall reconnects and resubscribes after the node restarts', { timeout: 120_000 }, async (t) => {
  let node = await H.startNode();
  const dir = node.dir;
  t.after(() => node.cleanup());
  const devices = await H.seed(node, { patients: ['p-1'], clinicians: ['dr-1'], teams: [['p-1', 'dr-1']] });
  const patient = H.token('patient', 'p-1');
  const push = (value) => H.gql(node, patient, H.PUSH, { d: devices['p-1'], s: [{ metric: 'HEART_RATE', at: H.iso(Date.now()), value }] });
  const b = await H.browser();
  t.after(() => b.close());
  const page = await H.newPage(b);
  await page.goto(`${node.url}/#token=${H.token('clinician', 'dr-1')}`);
  const hr = page.locator('li.tile[data-patient="p-1"] .vital.hr .v');
  await H.until('a live value before', async () => {
    await push(71);
    return (await hr.textContent()).trim() === '71';
  }, 20_000, 500);

  // Nothing went wrong while the node was up.
  assert.deepEqual(page.problems, []);
  // The node dies; the page says it is reconnecting.
  const addr = node.addr;
  node.kill();
  await page.locator('#link', { hasText: 'Reconnecting' }).waitFor();
  await H.shot(page, 'reconnect', '1-node-away');
  // Back on the same address and data: the page is live again, and the
  // subscriptions it had are there again (a new value arrives).
  node = await H.startNode({ dir, env: { CARDIO_HTTP_ADDR: addr } });
  await page.locator('#link', { hasText: 'Live' }).waitFor({ timeout: 30_000 });
  await H.until('a live value after the restart', async () => {
    await push(93);
    return (await hr.textContent()).trim() === '93';
  }, 30_000, 500);
  assert.ok(await page.locator('li.tile[data-patient="p-1"]').isVisible());
  await H.shot(page, 'reconnect', '2-live-again');
  // Since the kill, only connections refused or cut by the outage (a
  // request caught on a socket the kill closed is ERR_SOCKET_NOT_CONNECTED),
  // nothing else.
  assert.deepEqual(page.problems.filter((p) => !/ERR_CONNECTION_(REFUSED|RESET)|ERR_SOCKET_NOT_CONNECTED|WebSocket connection/.test(p)), []);
});
