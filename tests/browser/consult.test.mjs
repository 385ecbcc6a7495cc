// A consult's chat between a clinician in the console and a patient driven
// through the API: the patient asks and writes over HTTP, the clinician
// joins and answers in the browser, the patient reads the answer back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as H from './lib/harness.mjs';

test('a clinician chats in a consult with a patient driven through the API', { timeout: 120_000 }, async (t) => {
  const node = await H.startNode();
  t.after(() => node.cleanup());
  await H.seed(node, { patients: ['p-1'], clinicians: ['dr-1'], teams: [['p-1', 'dr-1']] });
  const patient = H.token('patient', 'p-1');
  const consult = (
    await H.gql(node, patient, 'mutation($r: ID!) { requestConsult(patientId: "p-1", reason: "palpitations at night", requestId: $r) }', {
      r: randomUUID(),
    })
  ).requestConsult;
  // The patient enters the waiting room (a clinician may join from then on).
  await H.gql(node, patient, 'mutation($c: ID!) { joinConsult(id: $c) }', { c: consult });

  const b = await H.browser();
  t.after(() => b.close());
  const page = await H.newPage(b);
  await page.goto(`${node.url}/#token=${H.token('clinician', 'dr-1')}`);
  await page.getByRole('link', { name: 'Consults' }).click();
  const waiting = page.locator(`#queue-waiting li[data-consult="${consult}"]`);
  await waiting.waitFor();
  assert.match(await waiting.textContent(), /p-1/);
  await H.shot(page, 'consult', '1-queue');
  await waiting.getByRole('button', { name: 'Join' }).click();
  await page.locator('[data-status="IN_PROGRESS"]').waitFor();
  await page.locator('.reason', { hasText: 'palpitations at night' }).waitFor();

  // The patient writes (HTTP); the clinician's chat shows it live.
  const send = 'mutation($c: ID!, $m: String!, $t: String!) { sendMessage(consultId: $c, clientMessageId: $m, text: $t) }';
  await H.gql(node, patient, send, { c: consult, m: randomUUID(), t: 'It started two days ago.' });
  await page.locator('.chat li.theirs', { hasText: 'It started two days ago.' }).waitFor();
  await H.shot(page, 'consult', '2-patient-wrote');

  // The clinician answers in the browser.
  await page.getByRole('textbox', { name: 'Message', exact: true }).fill('Please wear the patch tonight.');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.chat li.mine', { hasText: 'Please wear the patch tonight.' }).waitFor();
  // Once stored, the field is cleared for the next message.
  await page.waitForFunction(() => document.getElementById('chat-text').value === '');
  await H.shot(page, 'consult', '3-clinician-answered');

  // The patient reads it back through the API.
  const read = async () =>
    (await H.gql(node, patient, 'query($c: ID!) { consult(id: $c) { status notes messages { nodes { seq authorRole authorId text } } } }', { c: consult })).consult;
  const back = await read();
  const texts = back.messages.nodes.map((m) => [m.authorRole, m.text]);
  assert.deepEqual(texts, [
    ['PATIENT', 'It started two days ago.'],
    ['CLINICIAN', 'Please wear the patch tonight.'],
  ]);
  // Exactly once each, in the page too.
  assert.equal(await page.locator('.chat li').count(), 2);

  // Ended with notes: the patient sees the end and the notes.
  await page.getByLabel('Notes for the record').fill('Holter tonight; review tomorrow.');
  await page.getByRole('button', { name: 'End consult' }).click();
  await page.locator('[data-status="ENDED"]').waitFor();
  const ended = await read();
  assert.equal(ended.status, 'ENDED');
  assert.equal(ended.notes, 'Holter tonight; review tomorrow.');
  await H.shot(page, 'consult', '4-ended');
  assert.deepEqual(page.problems, []);
});
