// The first run: in an empty directory with no token key configured,
// `cardio serve` prints a sign-in link; opening it shows the console signed
// in as the local admin, with no other step.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

test('the sign-in link of a first run opens the console as admin', { timeout: 90_000 }, async (t) => {
  const node = await H.startNode({ secret: false });
  t.after(() => node.cleanup());
  // The link is a line of its own on stdout (JSON, since the node logs JSON).
  const url = await H.until('the sign-in link on stdout', () => H.signInLinks(node).admin);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/#token=/);
  assert.equal(new URL(url).port, new URL(node.url).port);

  const b = await H.browser();
  t.after(() => b.close());
  const page = await H.newPage(b);
  // The token is in the fragment: the request for the page carries none.
  const asked = [];
  page.on('request', (r) => asked.push(r.url()));
  await page.goto(url);
  await page.getByRole('heading', { name: 'Operations' }).waitFor();
  await page.locator('#who', { hasText: 'Admin' }).waitFor();
  await page.locator('.tree [data-path="/cardio"]').first().waitFor();
  assert.ok(!page.url().includes('token'), page.url());
  assert.deepEqual(asked.filter((u) => u.includes('token=')), []);
  // Kept for the tab: a reload stays signed in.
  await page.reload();
  await page.locator('#who', { hasText: 'Admin' }).waitFor();
  await H.shot(page, 'first-run', '1-signed-in-as-admin');

  // Sign-out forgets the token (and ends it): back to sign-in.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to cardio' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('cardio.token')), null);
  await H.shot(page, 'first-run', '2-signed-out');
  // The link's token was revoked by the sign-out: opening it again is refused, with the reason.
  await page.goto('about:blank');
  await page.goto(url);
  await page.locator('#signin-status', { hasText: /refused|ended|expired/i }).waitFor();
  await H.shot(page, 'first-run', '3-revoked-link-refused');
});
