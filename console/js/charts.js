// Small charts on canvas: sparklines for the wall, line charts with min/max
// bands for trends and metrics. Drawing is cheap and happens only when the
// caller asks (once per animation frame at most).

// Canvas sizes, measured once per canvas (and again after a resize):
// reading clientWidth after a DOM write would force a layout per chart.
let measured = new WeakMap();
window.addEventListener('resize', () => {
  measured = new WeakMap();
});

function sized(canvas) {
  const dpr = window.devicePixelRatio || 1;
  let size = measured.get(canvas);
  if (!size) {
    size = { w: canvas.clientWidth || canvas.width, h: canvas.clientHeight || canvas.height };
    if (size.w > 0 && canvas.isConnected) measured.set(canvas, size);
  }
  const { w, h: hgt } = size;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w, h: hgt };
}

function css(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

let palette = null;
export function colours() {
  if (!palette) {
    palette = {
      line: css('--chart-line', '#7fd1ff'),
      band: css('--chart-band', 'rgba(127,209,255,0.25)'),
      grid: css('--chart-grid', '#33404d'),
      text: css('--muted', '#a9b4bf'),
      stale: css('--stale', '#5b6670'),
      ecg: css('--ecg', '#5dff8f'),
    };
  }
  return palette;
}

/**
 * A sparkline of `points` ([{t, v}], oldest first) over the last `spanMs`
 * before `now`. Stale data is drawn in the stale colour.
 */
export function sparkline(canvas, points, { spanMs = 120_000, now = Date.now(), stale = false } = {}) {
  const { ctx, w, h } = sized(canvas);
  ctx.clearRect(0, 0, w, h);
  if (points.length < 2) return;
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of points) {
    if (p.v < lo) lo = p.v;
    if (p.v > hi) hi = p.v;
  }
  if (hi - lo < 1) {
    hi += 0.5;
    lo -= 0.5;
  }
  const from = now - spanMs;
  const c = colours();
  ctx.strokeStyle = stale ? c.stale : c.line;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  let started = false;
  for (const p of points) {
    if (p.t < from) continue;
    const x = ((p.t - from) / spanMs) * w;
    const y = h - 2 - ((p.v - lo) / (hi - lo)) * (h - 4);
    if (started) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
    started = true;
  }
  ctx.stroke();
}

/**
 * A line chart: `series` is [{t, mean, min, max}] oldest first, drawn
 * between `from` and `to` (ms), with a min-max band, axes labels and a
 * unit. Returns a one-line text summary for screen readers.
 */
export function lineChart(canvas, series, { from, to, unit = '', label = '' } = {}) {
  const { ctx, w, h } = sized(canvas);
  const c = colours();
  ctx.clearRect(0, 0, w, h);
  const left = 40;
  const bottom = h - 16;
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = c.text;
  if (!series.length) {
    ctx.fillText('no data in this period', left, h / 2);
    return `${label}: no data in this period`;
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of series) {
    lo = Math.min(lo, p.min ?? p.mean);
    hi = Math.max(hi, p.max ?? p.mean);
  }
  if (hi - lo < 1) {
    // A flat series: a range of one unit, not below zero if it never is.
    if (lo >= 0 && lo < 0.5) hi = lo + 1;
    else {
      hi += 0.5;
      lo -= 0.5;
    }
  }
  const x = (t) => left + ((t - from) / (to - from)) * (w - left - 4);
  const y = (v) => 4 + (1 - (v - lo) / (hi - lo)) * (bottom - 8);
  ctx.strokeStyle = c.grid;
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (const v of [lo, (lo + hi) / 2, hi]) {
    ctx.moveTo(left, y(v));
    ctx.lineTo(w - 4, y(v));
    ctx.fillText(`${Math.round(v * 10) / 10}`, 2, y(v) + 4);
  }
  ctx.stroke();
  const fmt = (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  ctx.fillText(fmt(from), left, h - 3);
  const end = fmt(to);
  ctx.fillText(end, w - 4 - ctx.measureText(end).width, h - 3);
  if (unit) ctx.fillText(unit, left + 4, 14);
  // The band.
  ctx.fillStyle = c.band;
  ctx.beginPath();
  series.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.max ?? p.mean)) : ctx.moveTo(x(p.t), y(p.max ?? p.mean))));
  for (let i = series.length - 1; i >= 0; i--) ctx.lineTo(x(series[i].t), y(series[i].min ?? series[i].mean));
  ctx.closePath();
  ctx.fill();
  // The mean.
  ctx.strokeStyle = c.line;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  series.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.mean)) : ctx.moveTo(x(p.t), y(p.mean))));
  ctx.stroke();
  if (series.length < 3) {
    ctx.fillStyle = c.line;
    for (const p of series) {
      ctx.beginPath();
      ctx.arc(x(p.t), y(p.mean), 3, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  const last = series[series.length - 1];
  return `${label}: ${series.length} points from ${Math.round(lo)} to ${Math.round(hi)} ${unit}, latest ${Math.round(last.mean * 10) / 10}`;
}
