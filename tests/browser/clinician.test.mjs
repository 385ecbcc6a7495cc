// A clinician in the console: signed in through `/#token=`, the care
// team's patients on the wall (and no one else's), stale values shown as no
// data, an alarm raised by pushSamples on the wall in its colour and text
// within 2 s, acknowledged with a note on the patient's page.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

const hr = (at, value) => ({ metric: 'HEART_RATE', at: H.iso(at), value });
const spo2 = (at, value) => ({ metric: 'SPO2', at: H.iso(at), value });
const bp = (at, systolic, diastolic) => ({ metric: 'BLOOD_PRESSURE', at: H.iso(at), systolic, diastolic });

test('a clinician sees the care team, an alarm within 2 s, and acknowledges it', { timeout: 120_000 }, async (t) => {
  const node = await H.startNode();
  t.after(() => node.cleanup());
  const devices = await H.seed(node, {
    patients: ['p-1', 'p-2', 'p-3'],
    clinicians: ['dr-1', 'dr-2'],
    teams: [['p-1', 'dr-1'], ['p-2', 'dr-1'], ['p-3', 'dr-2']],
  });
  const pt = { 'p-1': H.token('patient', 'p-1'), 'p-2': H.token('patient', 'p-2') };
  const push = (p, samples) => H.gql(node, pt[p], H.PUSH, { d: devices[p], s: samples });
  // p-2's only reading is a minute old: it must not look current.
  await push('p-2', [hr(Date.now() - 60_000, 88)]);

  const b = await H.browser();
  t.after(() => b.close());
  const page = await H.newPage(b);
  const dr1 = H.token('clinician', 'dr-1');
  await page.goto(`${node.url}/#token=${dr1}`);
  const tile = (p) => page.locator(`li.tile[data-patient="${p}"]`);
  await tile('p-1').waitFor();
  await tile('p-2').waitFor();
  // The fragment is gone from the address bar; the token is kept for the tab.
  assert.ok(!page.url().includes('token'), page.url());
  assert.equal(await page.evaluate(() => sessionStorage.getItem('cardio.token')), dr1);
  assert.equal(await page.locator('li.tile').count(), 2, 'only the care team (not p-3)');
  assert.match(await page.locator('#who').textContent(), /dr-1.*Clinician/);
  // Stale: no number, "no data".
  const p2hr = tile('p-2').locator('.vital.hr');
  await page.waitForFunction(() => document.querySelector('li.tile[data-patient="p-2"] .vital.hr')?.classList.contains('stale'));
  assert.equal((await p2hr.locator('.v').textContent()).trim(), '—');
  assert.match(await p2hr.locator('.age').textContent(), /no data/);
  await H.shot(page, 'clinician', '1-wall');

  // Live values arrive on the wall.
  await H.until('live vitals of p-1 on the wall', async () => {
    await push('p-1', [hr(Date.now(), 72), spo2(Date.now(), 97), bp(Date.now(), 121, 79)]);
    return (await tile('p-1').locator('.vital.hr .v').textContent()).trim() === '72';
  }, 20_000, 500);
  assert.equal((await tile('p-1').locator('.vital.spo2 .v').textContent()).trim(), '97');
  assert.equal((await tile('p-1').locator('.vital.bp .v').textContent()).trim(), '121/79');
  await H.shot(page, 'clinician', '2-live-vitals');

  // The alerts subscription is bound asynchronously: a first alarm for p-2
  // (pushed until the wall shows it) proves it is, with no time limit.
  await H.until('the alerts subscription to be bound', async () => {
    await push('p-2', [bp(Date.now(), 205, 125)]);
    return (await tile('p-2').locator('.alarm[data-kind="HYPERTENSIVE_CRISIS"]').count()) > 0;
  }, 30_000, 700);

  // Now the alarm for p-1: on the wall within 2 s of the push, yellow (medium) with its text.
  await push('p-1', [bp(Date.now(), 210, 130)]);
  const badge = tile('p-1').locator('.alarm[data-kind="HYPERTENSIVE_CRISIS"]');
  await badge.waitFor({ timeout: 2_000 });
  assert.match(await badge.textContent(), /Hypertensive crisis · Medium priority/);
  const colour = await badge.evaluate((el) => getComputedStyle(el).backgroundColor);
  assert.equal(colour, 'rgb(255, 210, 31)', 'IEC 60601-1-8 medium: yellow');
  assert.match(await page.locator('#announce').textContent(), /Medium priority alarm for p-1: Hypertensive crisis/);
  await H.shot(page, 'clinician', '3-alarm');

  // Acknowledged with a note on the patient's page.
  await tile('p-1').getByRole('button', { name: 'p-1', exact: true }).click();
  await page.getByRole('heading', { name: 'Patient p-1' }).waitFor();
  assert.ok(!page.url().includes('p-1'), `no patient id in the address: ${page.url()}`);
  const row = page.locator('table.alerts tr', { has: page.locator('.alarm[data-kind="HYPERTENSIVE_CRISIS"]') }).first();
  await row.getByRole('button', { name: 'Acknowledge' }).waitFor();
  await row.getByPlaceholder('Note (optional)').fill('seen, repeat in 5 min');
  await H.shot(page, 'clinician', '4-patient-page');
  await row.getByRole('button', { name: 'Acknowledge' }).click();
  await page.locator('table.alerts tr', { hasText: 'seen, repeat in 5 min' }).waitFor();
  const alerts = await H.gql(node, dr1, '{ alerts(patientId: "p-1", status: ALL) { nodes { kind acknowledgedBy acknowledgementNote } } }');
  const crisis = alerts.alerts.nodes.find((a) => a.kind === 'HYPERTENSIVE_CRISIS');
  assert.equal(crisis.acknowledgedBy, 'dr-1');
  assert.equal(crisis.acknowledgementNote, 'seen, repeat in 5 min');
  await H.shot(page, 'clinician', '5-acknowledged');

  // The live ECG strip draws what the `ecg` subscription brings.
  await H.until('ECG on the strip', async () => {
    const mv = Array.from({ length: 250 }, (_, i) => Math.sin(i / 8) * 0.2 + (i % 200 === 20 ? 1.2 : 0));
    await push('p-1', [{ metric: 'ECG', at: H.iso(Date.now() - 1000), hz: 250, millivolts: mv }]);
    return page.evaluate(() => window.__cardioStrip && window.__cardioStrip.maxN >= 249 && window.__cardioStrip.frames > 0);
  }, 20_000, 1000);
  await H.shot(page, 'clinician', '6-ecg');

  // Revoked elsewhere (an admin ends dr-1's sessions): the node closes the
  // WebSocket, and the console returns to sign-in saying why.
  await H.gql(node, H.token('admin', 'admin-1'), 'mutation { revokeSessions(subject: "dr-1") }');
  await page.getByRole('heading', { name: 'Sign in to cardio' }).waitFor({ timeout: 15_000 });
  assert.match(await page.locator('#signin-status').textContent(), /ended|revoked/i);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('cardio.token')), null);
  await H.shot(page, 'clinician', '7-revoked');
  assert.deepEqual(page.problems.filter((p) => !/status of 401/.test(p)), []);
});
