// A token that expires returns the console to sign-in, saying so: at its
// `exp`, read from the token, without waiting for the node to refuse it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

test('an expired token returns to sign-in with a clear message', { timeout: 60_000 }, async (t) => {
  const node = await H.startNode();
  t.after(() => node.cleanup());
  await H.seed(node, { patients: ['p-1'], clinicians: [], teams: [] });
  const b = await H.browser();
  t.after(() => b.close());
  const page = await H.newPage(b);
  const short = H.token('patient', 'p-1', '5s');
  await page.goto(`${node.url}/#token=${short}`);
  await page.getByRole('heading', { name: 'My care' }).waitFor();
  await H.shot(page, 'expiry', '1-signed-in');
  await page.getByRole('heading', { name: 'Sign in to cardio' }).waitFor({ timeout: 20_000 });
  assert.match(await page.locator('#signin-status').textContent(), /Your session expired/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('cardio.token')), null);
  // (The console leaves at the token's `exp`; the node, which allows some
  // clock leeway, refuses it a little later with reason TOKEN_EXPIRED.)
  await H.shot(page, 'expiry', '2-expired');
});
