// A live ECG strip on canvas: samples of the `ecg` subscription go into a
// ring buffer; every animation frame draws the last few seconds at a
// 25 mm/s, 10 mm/mV look on a paper grid (drawn once, on its own canvas),
// min/max per pixel column so the cost per frame is the strip's width.

const PX_PER_MM = 96 / 25.4; // CSS pixels
const MM_PER_S = 25;
const MM_PER_MV = 10;

export class EcgStrip {
  constructor(container, { seconds = 20 } = {}) {
    this.container = container;
    this.grid = document.createElement('canvas');
    this.trace = document.createElement('canvas');
    this.grid.className = 'ecg-grid';
    this.trace.className = 'ecg-trace';
    this.grid.setAttribute('aria-hidden', 'true');
    this.trace.setAttribute('role', 'img');
    this.trace.setAttribute('aria-label', 'Live ECG strip, 25 mm/s');
    container.append(this.grid, this.trace);
    this.capacitySeconds = seconds;
    this.hz = 0;
    this.buf = null; // Float32Array ring, NaN where no sample
    this.t0 = 0; // ms of sample index 0
    this.maxN = -1; // newest index written
    this.lag = null; // ms the strip runs behind now
    this.frames = 0;
    this.running = false;
    this.layout();
    this.onResize = () => this.layout();
    window.addEventListener('resize', this.onResize);
  }

  layout() {
    const dpr = window.devicePixelRatio || 1;
    const w = this.container.clientWidth || 600;
    const hgt = this.container.clientHeight || 160;
    for (const c of [this.grid, this.trace]) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
      c.style.width = `${w}px`;
      c.style.height = `${hgt}px`;
    }
    this.w = w;
    this.h = hgt;
    const g = this.grid.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = '#0b1410';
    g.fillRect(0, 0, w, hgt);
    const mm = PX_PER_MM;
    for (let i = 0, x = 0; x <= w; i++, x = i * mm) {
      g.strokeStyle = i % 5 === 0 ? '#1f4a33' : '#143024';
      g.beginPath();
      g.moveTo(Math.round(x) + 0.5, 0);
      g.lineTo(Math.round(x) + 0.5, hgt);
      g.stroke();
    }
    for (let i = 0, y = 0; y <= hgt; i++, y = i * mm) {
      g.strokeStyle = i % 5 === 0 ? '#1f4a33' : '#143024';
      g.beginPath();
      g.moveTo(0, Math.round(y) + 0.5);
      g.lineTo(w, Math.round(y) + 0.5);
      g.stroke();
    }
    const t = this.trace.getContext('2d');
    t.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  /** A segment of the subscription: `start` (DateTime), `hz`, `millivolts`. */
  push(segment) {
    const start = Date.parse(segment.start);
    const hz = segment.hz;
    const mv = segment.millivolts;
    if (!(start > 0) || !hz || !mv || !mv.length) return;
    if (hz !== this.hz) {
      this.hz = hz;
      this.buf = new Float32Array(hz * this.capacitySeconds).fill(NaN);
      this.t0 = start;
      this.maxN = -1;
    }
    const cap = this.buf.length;
    const first = Math.round(((start - this.t0) * hz) / 1000);
    if (first > this.maxN + cap) {
      this.buf.fill(NaN);
    } else {
      // Samples never pushed between the newest and this segment: a gap.
      for (let n = this.maxN + 1; n < first; n++) this.buf[((n % cap) + cap) % cap] = NaN;
    }
    for (let i = 0; i < mv.length; i++) {
      const n = first + i;
      if (n <= this.maxN - cap) continue;
      this.buf[((n % cap) + cap) % cap] = mv[i];
    }
    this.maxN = Math.max(this.maxN, first + mv.length - 1);
    // Run behind by how long after its first sample a batch arrives (its
    // length plus the delivery delay; the largest lately, smoothed), so
    // that the next batch is there before the strip reaches the end of
    // this one and the trace never stops short of the right edge.
    const behind = Date.now() - start + 150;
    this.lag = this.lag === null ? Math.max(behind, 300) : Math.max(behind, this.lag * 0.98 + behind * 0.02);
    this.lag = Math.min(this.lag, 5000);
  }

  start() {
    if (this.running) return;
    this.running = true;
    const tick = () => {
      if (!this.running) return;
      this.draw();
      this.frames += 1;
      this.raf = requestAnimationFrame(tick);
    };
    this.raf = requestAnimationFrame(tick);
  }

  stop() {
    this.running = false;
    cancelAnimationFrame(this.raf);
    window.removeEventListener('resize', this.onResize);
  }

  draw() {
    const ctx = this.trace.getContext('2d');
    ctx.clearRect(0, 0, this.w, this.h);
    if (!this.buf || this.lag === null) {
      ctx.fillStyle = '#a9b4bf';
      ctx.font = '13px system-ui, sans-serif';
      ctx.fillText('Waiting for ECG…', 12, this.h / 2);
      return;
    }
    const hz = this.hz;
    const cap = this.buf.length;
    const pxPerS = PX_PER_MM * MM_PER_S;
    const pxPerMv = PX_PER_MM * MM_PER_MV;
    const endMs = Date.now() - this.lag;
    const nEnd = ((endMs - this.t0) * hz) / 1000;
    const samplesPerPx = hz / pxPerS;
    const mid = this.h / 2;
    ctx.strokeStyle = '#5dff8f';
    ctx.lineWidth = 1.4;
    ctx.beginPath();
    let pen = false;
    for (let x = 0; x < this.w; x++) {
      const a = Math.floor(nEnd - (this.w - x) * samplesPerPx);
      const b = Math.floor(nEnd - (this.w - x - 1) * samplesPerPx);
      let lo = Infinity;
      let hi = -Infinity;
      for (let n = a; n <= b; n++) {
        if (n > this.maxN || n <= this.maxN - cap) continue;
        const v = this.buf[((n % cap) + cap) % cap];
        if (Number.isNaN(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      if (lo === Infinity) {
        pen = false;
        continue;
      }
      const y1 = mid - hi * pxPerMv;
      const y2 = mid - lo * pxPerMv;
      if (!pen) ctx.moveTo(x, y1);
      ctx.lineTo(x, y1);
      ctx.lineTo(x, y2);
      pen = true;
    }
    ctx.stroke();
    if (nEnd - this.maxN > hz * 2) {
      ctx.fillStyle = '#ffcf33';
      ctx.font = '13px system-ui, sans-serif';
      ctx.fillText('No ECG data for a few seconds', 12, 18);
    }
  }
}
