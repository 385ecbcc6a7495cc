// The console's performance (issue 14), run by hand (not part of
// `node --test tests/browser/`: it takes about a minute and measures speed,
// which the project keeps out of the test suite):
//
//   node tests/browser/perf.mjs            # the debug binary cargo built
//   CARDIO_BIN=target/release/cardio node tests/browser/perf.mjs
//
// 50 patients of one clinician's care team push HR and SpO2 every second
// (BP every 10 s), and one of them ECG at 250 Hz in one-second batches. The
// clinician's wall shows all 50, with the live ECG strip of one open. It
// measures, over a 15 s window:
// - the page's frame rate from Chromium's performance trace (DrawFrame
//   events of the compositor) and from the strip's own animation frames;
// - the node's CPU (utime + stime from /proc/<pid>/stat) with no console
//   open, then with the console open: the difference is what the console's
//   subscriptions cost the node.
// It prints one JSON object (and fails if the page drew fewer than 30 fps).

import { readFileSync } from 'node:fs';
import * as H from './lib/harness.mjs';
import { stream } from './lib/load.mjs';

const PATIENTS = 50;
const WINDOW_MS = 15_000;

const ids = Array.from({ length: PATIENTS }, (_, i) => `p-${String(i + 1).padStart(2, '0')}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the name).
  return Number(fields[11]) + Number(fields[12]);
}
const TICKS_PER_S = 100; // getconf CLK_TCK on Linux

async function main() {
  const node = await H.startNode({ lifetimeMs: 300_000 });
  try {
    const devices = await H.seed(node, { patients: ids, clinicians: ['dr-1'], teams: ids.map((p) => [p, 'dr-1']) });
    const tokens = Object.fromEntries(ids.map((p) => [p, H.token('patient', p)]));
    const load = stream(node, devices, tokens, { 'p-01': { ecg: 'sinus' } });
    await sleep(5_000);

    // The node without any console.
    let c0 = cpuTicks(node.pid);
    let t0 = Date.now();
    await sleep(WINDOW_MS);
    const baseline = ((cpuTicks(node.pid) - c0) / TICKS_PER_S / ((Date.now() - t0) / 1000)) * 100;

    // With the wall open and p-01's ECG on it.
    const b = await H.browser();
    const page = await H.newPage(b, { width: 1600, height: 1000 });
    await page.goto(`${node.url}/#token=${H.token('clinician', 'dr-1')}`);
    await page.locator('li.tile').nth(PATIENTS - 1).waitFor({ timeout: 30_000 });
    await page.getByRole('button', { name: 'Live ECG of p-01' }).click();
    await H.until('every tile live and the strip drawing', () =>
      page.evaluate(() => {
        const live = [...document.querySelectorAll('li.tile .vital.hr')].filter((e) => !e.classList.contains('stale')).length;
        const s = window.__cardioStrip;
        return live === 50 && s && s.maxN > 250 && s.frames > 10;
      }), 30_000, 500);
    await sleep(3_000);
    const f0 = await page.evaluate(() => window.__cardioStrip.frames);
    await b.startTracing(page, { categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline.frame', 'benchmark'] });
    c0 = cpuTicks(node.pid);
    t0 = Date.now();
    await sleep(WINDOW_MS);
    const withConsole = ((cpuTicks(node.pid) - c0) / TICKS_PER_S / ((Date.now() - t0) / 1000)) * 100;
    const elapsed = (Date.now() - t0) / 1000;
    const f1 = await page.evaluate(() => window.__cardioStrip.frames);
    const trace = JSON.parse((await b.stopTracing()).toString('utf8'));
    const events = trace.traceEvents || trace;
    const draws = events.filter((e) => e.name === 'DrawFrame');
    const ts = draws.map((e) => e.ts).sort((a, b) => a - b);
    const span = ts.length > 1 ? (ts[ts.length - 1] - ts[0]) / 1e6 : elapsed;
    const traceFps = ts.length > 1 ? (ts.length - 1) / span : 0;
    // Long frames: gaps between draws over 50 ms.
    let longGaps = 0;
    for (let i = 1; i < ts.length; i++) if (ts[i] - ts[i - 1] > 50_000) longGaps += 1;
    const stale = await page.evaluate(() => document.querySelectorAll('li.tile .vital.hr.stale').length);
    await H.shot(page, 'perf', 'wall-50-with-ecg');
    await b.close();
    await load.stop();
    const result = {
      binary: H.BIN.replace(`${H.ROOT}/`, ''),
      patients: PATIENTS,
      window_s: Math.round(elapsed * 10) / 10,
      trace_draw_frames: draws.length,
      trace_fps: Math.round(traceFps * 10) / 10,
      trace_gaps_over_50ms: longGaps,
      strip_raf_fps: Math.round(((f1 - f0) / elapsed) * 10) / 10,
      stale_tiles_at_end: stale,
      node_cpu_percent_without_console: Math.round(baseline * 10) / 10,
      node_cpu_percent_with_console: Math.round(withConsole * 10) / 10,
      pushes: load.stats.pushes,
      push_failures: load.stats.failures,
    };
    console.log(JSON.stringify(result, null, 2));
    if (traceFps < 30) {
      console.error(`FAIL: ${traceFps.toFixed(1)} fps < 30`);
      process.exitCode = 1;
    }
  } finally {
    node.cleanup();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
