// The README's pictures, made by hand from a seeded, live node:
//
//   cargo build && node tests/browser/screenshots.mjs
//
// writes docs/console-wall.png (a clinician's wall: live values, a high,
// a medium and a low alarm, a stale patient, one live ECG strip) and
// docs/console-ops.png (the ops view: cluster, shard map, the supervision
// tree with an actor that crashed and was restarted).

import { execFileSync } from 'node:child_process';
import path from 'node:path';
import * as H from './lib/harness.mjs';
import { stream } from './lib/load.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ids = Array.from({ length: 12 }, (_, i) => `p-${String(i + 1).padStart(2, '0')}`);

async function main() {
  const node = await H.startNode({ lifetimeMs: 240_000 });
  let load = null;
  try {
    const devices = await H.seed(node, { patients: ids, clinicians: ['dr-1'], teams: ids.map((p) => [p, 'dr-1']) });
    const tokens = Object.fromEntries(ids.map((p) => [p, H.token('patient', p)]));
    // p-12's device went quiet a minute ago: stale, shown as no data.
    await H.gql(node, tokens['p-12'], H.PUSH, {
      d: devices['p-12'],
      s: [{ metric: 'HEART_RATE', at: H.iso(Date.now() - 60_000), value: 81 }, { metric: 'SPO2', at: H.iso(Date.now() - 60_000), value: 95 }],
    });
    const b = await H.browser();
    const page = await H.newPage(b, { width: 1440, height: 1130 });
    await page.goto(`${node.url}/#token=${H.token('clinician', 'dr-1')}`);
    await page.locator('li.tile').nth(ids.length - 1).waitFor();
    await page.getByRole('button', { name: 'Live ECG of p-01' }).click();
    load = stream(node, devices, tokens, {
      'p-01': { ecg: 'sinus' },
      'p-04': { bp: [204, 126] }, // hypertensive crisis: medium
      'p-07': { spo2: 79 }, // severe low SpO2 for 10 s: high
      'p-09': { ecg: 'hum' }, // mains hum only: poor ECG signal, low
      'p-12': { silent: true },
    });
    await H.until('the three alarms on the wall', () =>
      page.evaluate(() => ['alarm-high', 'alarm-medium', 'alarm-low'].every((c) => document.querySelector(`li.tile .alarm.${c}`))), 60_000, 1000).catch((e) => console.error(`(${e.message}; taking the picture anyway)`));
    await sleep(3_000);
    await page.screenshot({ path: path.join(H.ROOT, 'docs/console-wall.png') });

    // Ops: a device crashes on start (its table taken away) and is restarted.
    const ops = H.token('ops', 'ops-1');
    const victim = devices['p-11'];
    await H.gql(node, ops, 'mutation($p: String!) { restartActor(path: $p) }', { p: `/cardio/entities/device/${victim}` });
    await sleep(500);
    const db = `${node.dir}/data/cardio.db`;
    execFileSync('sqlite3', [db, 'ALTER TABLE snapshots RENAME TO snapshots_away']);
    await sleep(2_000);
    execFileSync('sqlite3', [db, 'ALTER TABLE snapshots_away RENAME TO snapshots']);
    const opsPage = await H.newPage(b, { width: 1440, height: 960 });
    await opsPage.goto(`${node.url}/#token=${ops}`);
    await opsPage.locator('.tree [data-path="/cardio"]').first().waitFor();
    await opsPage.locator('.tree .restarts.restarted').first().waitFor({ timeout: 20_000 });
    await sleep(1_000);
    await opsPage.evaluate(() => window.scrollTo(0, document.getElementById('h-cluster').offsetTop - 60));
    await opsPage.screenshot({ path: path.join(H.ROOT, 'docs/console-ops.png') });
    await b.close();
    console.log('docs/console-wall.png, docs/console-ops.png written');
  } finally {
    if (load) await load.stop();
    node.cleanup();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
