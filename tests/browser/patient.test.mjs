// A patient in the console: their devices and consults, a consult asked
// for from the page (once, whatever the retries), and another patient's
// page refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

test("a patient asks for a consult and is refused another patient's page", { timeout: 90_000 }, async (t) => {
  const node = await H.startNode();
  t.after(() => node.cleanup());
  const devices = await H.seed(node, { patients: ['p-1', 'p-2'], clinicians: ['dr-1'], teams: [['p-1', 'dr-1'], ['p-2', 'dr-1']] });
  const b = await H.browser();
  t.after(() => b.close());
  const page = await H.newPage(b);
  const patient = H.token('patient', 'p-1');
  await page.goto(`${node.url}/#token=${patient}`);
  await page.getByRole('heading', { name: 'My care' }).waitFor();
  await page.locator('#my-devices li', { hasText: devices['p-1'] }).waitFor();
  assert.equal(await page.locator('#my-devices li', { hasText: devices['p-2'] }).count(), 0);
  await page.locator('#my-consults li', { hasText: 'No consult yet.' }).waitFor();
  await H.shot(page, 'patient', '1-home');

  await page.getByLabel('What would you like to talk about?').fill('My watch says my pulse is irregular.');
  await page.getByRole('button', { name: 'Request a consult' }).click();
  // Opening it, the patient entered its waiting room.
  await page.locator('[data-status="WAITING"]').waitFor();
  const mine = await H.gql(node, patient, '{ me { consults { nodes { id status } } } }');
  assert.equal(mine.me.consults.nodes.length, 1);
  assert.equal(mine.me.consults.nodes[0].status, 'WAITING');
  await H.shot(page, 'patient', '2-consult-requested');

  // Another patient's page, opened the way the console opens a patient
  // (the id in history.state): the API refuses, the page says so.
  await page.evaluate(() => {
    history.pushState({ view: 'patient', id: 'p-2' }, '', '#/patient');
    dispatchEvent(new PopStateEvent('popstate', { state: history.state }));
  });
  const refused = page.locator('.refused');
  await refused.waitFor();
  assert.match(await refused.textContent(), /Refused: you may not see this patient's record/);
  assert.equal(await page.locator('.ecg-box').count(), 0, 'nothing of p-2 is shown');
  await H.shot(page, 'patient', '3-other-patient-refused');
  assert.deepEqual(page.problems.filter((p) => !p.includes('403')), []);
});
