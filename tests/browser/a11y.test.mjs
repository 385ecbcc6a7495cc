// Keyboard and labels: signing in and restarting an actor with the keyboard
// only; every control has an accessible name; focus is visible.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

/** Controls without an accessible name (label, aria-label, text). */
function unnamed() {
  const bad = [];
  for (const el of document.querySelectorAll('button, input, select, textarea, a[href]')) {
    if (el.closest('[hidden]')) continue;
    const labelled = (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.closest('label');
    const name = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || (labelled && labelled.textContent.trim()) || el.textContent.trim() || el.getAttribute('title');
    if (!name) bad.push(el.outerHTML.slice(0, 80));
  }
  return bad;
}

test('the console can be used with the keyboard alone', { timeout: 90_000 }, async (t) => {
  const node = await H.startNode();
  t.after(() => node.cleanup());
  // A device actor in the tree, which ops may restart.
  const devices = await H.seed(node, { patients: ['p-1'], clinicians: [], teams: [] });
  await H.gql(node, H.token('patient', 'p-1'), H.PUSH, { d: devices['p-1'], s: [{ metric: 'HEART_RATE', at: H.iso(Date.now() - 1000), value: 70 }] });
  const b = await H.browser();
  t.after(() => b.close());
  const page = await H.newPage(b);
  await page.goto(node.url);
  await page.getByRole('heading', { name: 'Sign in to cardio' }).waitFor();
  assert.deepEqual(await page.evaluate(unnamed), []);
  // The token field has focus; type, Tab to the button, Enter.
  assert.equal(await page.evaluate(() => document.activeElement.id), 'token');
  await page.keyboard.type(H.token('ops', 'ops-1'));
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Sign in');
  const ring = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(ring, 'none', 'focus is visible');
  await page.keyboard.press('Enter');
  await page.locator('.tree [data-path="/cardio"]').first().waitFor();
  assert.deepEqual(await page.evaluate(unnamed), []);

  // Tab to the first Restart button of the tree; Enter opens the
  // confirmation with focus on Cancel; Escape closes it, nothing restarted.
  let found = false;
  for (let i = 0; i < 60 && !found; i++) {
    await page.keyboard.press('Tab');
    found = await page.evaluate(() => document.activeElement.dataset.restart !== undefined);
  }
  assert.ok(found, 'a Restart button is reachable by Tab');
  await page.keyboard.press('Enter');
  await page.getByRole('dialog').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Cancel');
  await H.shot(page, 'a11y', '1-confirm-by-keyboard');
  await page.keyboard.press('Escape');
  await page.getByRole('dialog').waitFor({ state: 'detached' });
  assert.deepEqual(page.problems, []);
});
