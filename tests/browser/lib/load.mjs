// Devices streaming through the API, for the performance script and the
// README's screenshots: vitals every second, ECG at 250 Hz in one-second
// batches, with episodes that raise alarms.

import * as H from './harness.mjs';

export const HZ = 250;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One second of a synthetic ECG (75/min): P, QRS and T waves as Gaussians. */
export function ecgSecond(startMs) {
  const out = new Array(HZ);
  for (let i = 0; i < HZ; i++) {
    const t = (startMs + (i * 1000) / HZ) / 1000;
    const ph = (t % 0.8) / 0.8;
    const g = (c, w, a) => a * Math.exp(-(((ph - c) / w) ** 2));
    out[i] = Math.round((g(0.2, 0.03, 0.15) + g(0.35, 0.012, 1.2) - g(0.33, 0.01, 0.15) - g(0.37, 0.01, 0.25) + g(0.6, 0.05, 0.3)) * 1000) / 1000;
  }
  return out;
}

/** One second of mains hum (50 Hz) and nothing else: a poor ECG signal. */
export function humSecond() {
  return Array.from({ length: HZ }, (_, i) => Math.round(Math.sin((2 * Math.PI * 50 * i) / HZ + 0.3) * 400) / 1000);
}

/**
 * Streams every patient's device once a second until `stop()`:
 * `plan[p]` may set `ecg: 'sinus' | 'hum'`, `spo2`, `hr`, `bp: [s, d]`.
 * Returns { stop, stats }.
 */
export function stream(node, devices, tokens, plan = {}) {
  const state = { stopped: false };
  const stats = { pushes: 0, failures: 0 };
  const ids = Object.keys(devices);
  const one = async (p, k) => {
    await sleep((k * 1000) / ids.length);
    const want = plan[p] || {};
    let n = 0;
    let ecgAt = Date.now() - 1000;
    while (!state.stopped) {
      const now = Date.now();
      const s = [
        { metric: 'HEART_RATE', at: H.iso(now), value: want.hr ?? 68 + ((k * 3 + n) % 9) },
        { metric: 'SPO2', at: H.iso(now), value: want.spo2 ?? 96 + ((k + n) % 3) },
      ];
      if (n % 10 === 0 || want.bp) {
        const [sys, dia] = want.bp || [116 + (k % 11), 74 + (k % 7)];
        s.push({ metric: 'BLOOD_PRESSURE', at: H.iso(now), systolic: sys, diastolic: dia });
      }
      const jobs = [H.gqlRaw(node, tokens[p], H.PUSH, { d: devices[p], s })];
      if (want.ecg) {
        const mv = want.ecg === 'hum' ? humSecond() : ecgSecond(ecgAt);
        jobs.push(H.gqlRaw(node, tokens[p], H.PUSH, { d: devices[p], s: [{ metric: 'ECG', at: H.iso(ecgAt), hz: HZ, millivolts: mv }] }));
        ecgAt += 1000;
      }
      for (const r of await Promise.allSettled(jobs)) {
        stats.pushes += 1;
        if (r.status === 'rejected' || r.value.errors) stats.failures += 1;
      }
      n += 1;
      await sleep(Math.max(0, now + 1000 - Date.now()));
    }
  };
  const running = ids.filter((p) => !(plan[p] && plan[p].silent)).map((p, k) => one(p, k));
  return {
    stats,
    async stop() {
      state.stopped = true;
      await Promise.allSettled(running);
    },
  };
}
