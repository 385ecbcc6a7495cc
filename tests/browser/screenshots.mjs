// The README's pictures, made by hand from `cardio demo` (a node seeded
// with a care team whose monitors stream vitals and ECG, and a waiting
// consult):
//
//   cargo build && node tests/browser/screenshots.mjs
//
// writes docs/console-wall.png (the demo clinician's wall with a live ECG
// strip and the alarms of the moment) and docs/console-ops.png (the ops
// view: cluster, shard map, the supervision tree with a device actor that
// crashed and was restarted).

import { execFileSync } from 'node:child_process';
import path from 'node:path';
import * as H from './lib/harness.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const node = await H.startNode({ command: 'demo', secret: false, lifetimeMs: 240_000 });
  try {
    const links = await H.until('the demo sign-in links', () => {
      const l = H.signInLinks(node);
      return l.clinician && l.ops ? l : null;
    }, 60_000);
    const b = await H.browser();
    const page = await H.newPage(b, { width: 1440, height: 900 });
    await page.goto(links.clinician);
    await page.locator('li.tile').nth(5).waitFor({ timeout: 30_000 });
    await page.getByRole('button', { name: 'Live ECG of demo-p3' }).click();
    // Every tile live, and the alarm of the AF episodes of demo-p3.
    await H.until('live tiles and an alarm on the wall', () =>
      page.evaluate(() => document.querySelectorAll('li.tile .vital.hr.stale').length === 0 && document.querySelector('li.tile .alarm[data-kind]')), 90_000, 1000)
      .catch((e) => console.error(`(${e.message}; taking the picture anyway)`));
    await sleep(4_000);
    await page.screenshot({ path: path.join(H.ROOT, 'docs/console-wall.png') });

    // Ops: a device crashes on start (its table taken away) and is restarted.
    const ops = new URL(links.ops).hash.replace('#token=', '');
    const tree = (await H.gql(node, ops, '{ supervisionTree(node: "*") { path kind } }')).supervisionTree;
    const victim = tree.find((n) => n.kind === 'device').path;
    await H.gql(node, ops, 'mutation($p: String!) { restartActor(path: $p) }', { p: victim });
    await sleep(500);
    const db = `${node.dir}/data/cardio.db`;
    execFileSync('sqlite3', [db, 'ALTER TABLE snapshots RENAME TO snapshots_away']);
    await sleep(2_500);
    execFileSync('sqlite3', [db, 'ALTER TABLE snapshots_away RENAME TO snapshots']);
    const opsPage = await H.newPage(b, { width: 1440, height: 900 });
    await opsPage.goto(links.ops);
    await opsPage.locator('.tree .restarts.restarted').first().waitFor({ timeout: 30_000 });
    await sleep(1_000);
    await opsPage.evaluate(() => window.scrollTo(0, document.getElementById('h-cluster').offsetTop - 60));
    await opsPage.screenshot({ path: path.join(H.ROOT, 'docs/console-ops.png') });
    await b.close();
    console.log('docs/console-wall.png, docs/console-ops.png written');
  } finally {
    node.cleanup();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
