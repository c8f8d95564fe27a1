// The cache monitor (/admin/cache): polls /admin/cache.json once a second and draws it.
// No library: a small canvas line/area/bar chart with a crosshair read-out. Every string that
// comes from the server reaches the page through textContent, never as HTML.
// For tests and the curious: window.tcMonitor holds the last feed and what each chart drew.
'use strict';

(() => {
  const FEED = '/admin/cache.json';
  const PERIOD_MS = 1000;
  const WINDOW_MS = 60000;
  const PALETTE = ['#2dd4bf', '#a78bfa', '#fbbf24', '#38bdf8', '#fb7185', '#a3e635', '#fb923c',
    '#f472b6', '#60a5fa', '#facc15', '#4ade80', '#c084fc'];
  const CACHED = '#2dd4bf';
  const UNCACHED = '#fb923c';

  const state = { feed: null, updates: 0, failures: 0, paused: false, charts: {}, lastOk: 0 };
  window.tcMonitor = state;
  const nsColors = new Map();
  const colorOf = (ns) => {
    if (!nsColors.has(ns)) nsColors.set(ns, PALETTE[nsColors.size % PALETTE.length]);
    return nsColors.get(ns);
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const finite = (v) => typeof v === 'number' && Number.isFinite(v);

  // ---- formatting ----------------------------------------------------------------------
  const group = (n) => Math.round(n).toLocaleString('en-US').replace(/,/g, '\u202f');
  function fmt(v, digits = 1) {
    if (!finite(v)) return '–';
    if (Math.abs(v) >= 10000) return group(v);
    return v.toFixed(digits);
  }
  function fmtMs(v) {
    if (!finite(v)) return '–';
    if (v < 1) return v.toFixed(3);
    if (v < 10) return v.toFixed(2);
    if (v < 100) return v.toFixed(1);
    return group(v);
  }
  function fmtBytes(b) {
    if (!finite(b)) return ['–', ''];
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let u = 0;
    while (b >= 1024 && u < units.length - 1) { b /= 1024; u++; }
    return [u === 0 ? String(Math.round(b)) : b.toFixed(b < 10 ? 2 : 1), units[u]];
  }
  const fmtPct = (r) => (finite(r) ? (r * 100).toFixed(r >= 0.999 || r === 0 ? 1 : 1) : '–');
  function fmtAge(s) {
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
    return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  }

  // ---- the chart -----------------------------------------------------------------------
  const tip = el('div', 'tip');
  tip.hidden = true;
  document.addEventListener('DOMContentLoaded', () => document.body.appendChild(tip));

  function niceStep(span, ticks) {
    const raw = span / ticks;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }

  class Chart {
    // opts: { kind: 'line'|'area'|'bars', yMax (fixed), log, fmt (axis label), tipFmt }
    constructor(canvas, opts) {
      this.c = canvas;
      this.o = opts;
      this.t = [];
      this.series = [];
      this.hover = -1;
      canvas.addEventListener('mousemove', (ev) => this.onMove(ev));
      canvas.addEventListener('mouseleave', () => { this.hover = -1; tip.hidden = true; this.draw(); });
    }

    set(t, series) {
      this.t = t;
      this.series = series;
      let points = 0, nonzero = 0, max = 0;
      for (const s of series) for (const v of s.values) {
        if (!finite(v)) continue;
        points++;
        if (v > 0) nonzero++;
        if (v > max) max = v;
      }
      this.stats = { points, nonzero, max, drawn: false };
      this.draw();
    }

    geometry() {
      const dpr = window.devicePixelRatio || 1;
      const w = this.c.clientWidth, h = this.c.clientHeight;
      if (this.c.width !== Math.round(w * dpr) || this.c.height !== Math.round(h * dpr)) {
        this.c.width = Math.round(w * dpr);
        this.c.height = Math.round(h * dpr);
      }
      return { dpr, w, h, l: 56, r: 12, t: 10, b: 24 };
    }

    yDomain() {
      const o = this.o;
      let max = 0, min = Infinity;
      for (const s of this.series) for (const v of s.values) if (finite(v)) {
        max = Math.max(max, v);
        if (v > 0) min = Math.min(min, v);
      }
      if (o.kind === 'bars' || o.stacked) {
        for (let i = 0; i < this.t.length; i++) {
          let sum = 0;
          for (const s of this.series) if (finite(s.values[i])) sum += s.values[i];
          if (o.stacked) max = Math.max(max, sum);
        }
      }
      if (o.log) {
        if (!Number.isFinite(min)) min = 0.01;
        const lo = Math.pow(10, Math.floor(Math.log10(Math.max(min, 0.001))));
        const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(max, lo * 10))));
        return { lo, hi, log: true };
      }
      if (o.ratio) { // 0..1, zoomed in on the top when every value is high
        let rmin = Infinity;
        for (const s of this.series) for (const v of s.values) if (finite(v)) rmin = Math.min(rmin, v);
        const lo = Number.isFinite(rmin) ? Math.max(0, Math.min(0.8, Math.floor((rmin - 0.02) * 10) / 10)) : 0;
        return { lo, hi: 1, step: lo >= 0.6 ? 0.1 : 0.25 };
      }
      if (max <= 0) max = 1;
      // bytes: steps that are round in the unit the labels use
      const base = o.bytes ? Math.pow(1024, Math.max(0, Math.floor(Math.log(max * 1.1) / Math.log(1024)))) : 1;
      const step = niceStep((max * 1.1) / base, 4) * base;
      return { lo: 0, hi: Math.ceil((max * 1.1) / step) * step, step };
    }

    draw() {
      const g = this.geometry();
      const ctx = this.c.getContext('2d');
      ctx.setTransform(g.dpr, 0, 0, g.dpr, 0, 0);
      ctx.clearRect(0, 0, g.w, g.h);
      const pw = g.w - g.l - g.r, ph = g.h - g.t - g.b;
      if (pw <= 0 || ph <= 0) return;
      const gridC = cssVar('--grid'), faint = cssVar('--faint'), lineC = cssVar('--line');
      const font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
      const tEnd = this.t.length ? this.t[this.t.length - 1] : Date.now();
      const tStart = tEnd - WINDOW_MS;
      const x = (t) => g.l + ((t - tStart) / WINDOW_MS) * pw;
      const d = this.yDomain();
      const y = d.log
        ? (v) => g.t + ph - ((Math.log10(Math.max(v, d.lo)) - Math.log10(d.lo)) /
            (Math.log10(d.hi) - Math.log10(d.lo))) * ph
        : (v) => g.t + ph - ((v - d.lo) / (d.hi - d.lo)) * ph;
      this.map = { x, y, tStart, pw, g };

      // grid and axes
      ctx.font = font;
      ctx.lineWidth = 1;
      ctx.fillStyle = faint;
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      const yt = [];
      if (d.log) for (let v = d.lo; v <= d.hi * 1.0001; v *= 10) yt.push(v);
      else if (d.step) for (let v = d.lo; v <= d.hi + d.step / 2; v += d.step) yt.push(v);
      else for (let i = 0; i <= 4; i++) yt.push(d.lo + ((d.hi - d.lo) * i) / 4);
      for (const v of yt) {
        const yy = Math.round(y(v)) + 0.5;
        ctx.strokeStyle = gridC;
        ctx.beginPath();
        ctx.moveTo(g.l, yy);
        ctx.lineTo(g.l + pw, yy);
        ctx.stroke();
        ctx.fillText(this.o.fmt(v), g.l - 8, yy);
      }
      ctx.textAlign = 'center';
      ctx.textBaseline = 'top';
      for (let s = 60; s >= 0; s -= 15) {
        const xx = Math.round(x(tEnd - s * 1000)) + 0.5;
        ctx.strokeStyle = gridC;
        ctx.beginPath();
        ctx.moveTo(xx, g.t);
        ctx.lineTo(xx, g.t + ph);
        ctx.stroke();
        ctx.fillText(s === 0 ? 'now' : `−${s} s`, Math.min(Math.max(xx, g.l + 14), g.l + pw - 12), g.t + ph + 7);
      }
      ctx.strokeStyle = lineC;
      ctx.beginPath();
      ctx.moveTo(g.l, g.t + ph + 0.5);
      ctx.lineTo(g.l + pw, g.t + ph + 0.5);
      ctx.stroke();

      // data
      ctx.save();
      ctx.beginPath();
      ctx.rect(g.l, g.t - 4, pw, ph + 6);
      ctx.clip();
      if (this.o.kind === 'bars') this.drawBars(ctx, x, y, ph, g);
      else for (const s of this.series) this.drawLine(ctx, s, x, y, g.t + ph);
      if (this.hover >= 0 && this.hover < this.t.length) {
        const xx = Math.round(x(this.t[this.hover])) + 0.5;
        ctx.strokeStyle = faint;
        ctx.setLineDash([3, 3]);
        ctx.beginPath();
        ctx.moveTo(xx, g.t);
        ctx.lineTo(xx, g.t + ph);
        ctx.stroke();
        ctx.setLineDash([]);
        if (this.o.kind !== 'bars') {
          for (const s of this.series) {
            const v = s.values[this.hover];
            if (!finite(v)) continue;
            ctx.fillStyle = s.color;
            ctx.beginPath();
            ctx.arc(xx, y(v), 3, 0, Math.PI * 2);
            ctx.fill();
          }
        }
      }
      ctx.restore();
      if (this.stats) this.stats.drawn = true;
    }

    drawLine(ctx, s, x, y, base) {
      ctx.lineWidth = s.width || 1.75;
      ctx.strokeStyle = s.color;
      ctx.lineJoin = 'round';
      ctx.lineCap = 'round';
      ctx.setLineDash(s.dash || []);
      // runs of finite values; a null breaks the line
      const runs = [];
      let run = [];
      for (let i = 0; i < this.t.length; i++) {
        const v = s.values[i];
        if (finite(v)) run.push([x(this.t[i]), y(v)]);
        else if (run.length) { runs.push(run); run = []; }
      }
      if (run.length) runs.push(run);
      for (const r of runs) {
        if (s.fill && r.length > 1) {
          const grad = ctx.createLinearGradient(0, Math.min(...r.map((p) => p[1])), 0, base);
          grad.addColorStop(0, hexA(s.color, 0.28));
          grad.addColorStop(1, hexA(s.color, 0.02));
          ctx.fillStyle = grad;
          ctx.beginPath();
          ctx.moveTo(r[0][0], base);
          for (const p of r) ctx.lineTo(p[0], p[1]);
          ctx.lineTo(r[r.length - 1][0], base);
          ctx.closePath();
          ctx.fill();
        }
        ctx.beginPath();
        r.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
        if (r.length === 1) ctx.arc(r[0][0], r[0][1], 1.5, 0, Math.PI * 2);
        ctx.stroke();
      }
      ctx.setLineDash([]);
    }

    drawBars(ctx, x, y, ph, g) {
      const n = this.series.length;
      const slot = (this.map.pw / (WINDOW_MS / PERIOD_MS)) * 0.8;
      const bw = Math.max(1, slot / n);
      for (let i = 0; i < this.t.length; i++) {
        const cx = x(this.t[i]) - slot / 2;
        this.series.forEach((s, k) => {
          const v = s.values[i];
          if (!finite(v) || v <= 0) return;
          const top = y(v);
          ctx.fillStyle = i === this.hover ? s.color : hexA(s.color, 0.8);
          ctx.fillRect(cx + k * bw, top, Math.max(1, bw - 1), g.t + ph - top);
        });
      }
    }

    onMove(ev) {
      if (!this.map || !this.t.length) return;
      const rect = this.c.getBoundingClientRect();
      const px = ev.clientX - rect.left;
      let best = -1, dist = Infinity;
      for (let i = 0; i < this.t.length; i++) {
        const dd = Math.abs(this.map.x(this.t[i]) - px);
        if (dd < dist) { dist = dd; best = i; }
      }
      this.hover = dist < 24 ? best : -1;
      this.draw();
      if (this.hover < 0) { tip.hidden = true; return; }
      tip.replaceChildren();
      const ago = Math.round((this.t[this.t.length - 1] - this.t[this.hover]) / 1000);
      tip.appendChild(el('div', 't', ago === 0 ? 'now' : `${ago} s ago`));
      for (const s of this.series) {
        const row = el('div', 'row');
        const k = el('span', 'k');
        const chip = el('span', 'chip');
        chip.style.background = s.color;
        k.append(chip, document.createTextNode(s.name));
        row.append(k, el('span', 'v', this.o.tipFmt(s.values[this.hover])));
        tip.appendChild(row);
      }
      tip.hidden = false;
      const tw = tip.offsetWidth;
      tip.style.left = `${Math.min(ev.clientX + 14, window.innerWidth - tw - 8)}px`;
      tip.style.top = `${ev.clientY + 14}px`;
    }
  }

  function hexA(hex, a) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
  }

  function legend(id, items) {
    const box = $(id);
    box.replaceChildren();
    for (const it of items) {
      const item = el('span', 'item');
      const chip = el('span', it.dash ? 'chip dash' : 'chip');
      chip.style.background = it.color;
      item.append(chip, document.createTextNode(it.name));
      if (it.value !== undefined) item.appendChild(el('span', 'val', it.value));
      box.appendChild(item);
    }
  }

  // ---- rendering the feed ----------------------------------------------------------------
  let charts;

  function setupCharts() {
    const pctAxis = (v) => `${Math.round(v * 100)} %`;
    charts = {
      ratio: new Chart($('c-ratio'), { kind: 'line', ratio: true, fmt: pctAxis, tipFmt: (v) => (finite(v) ? `${fmtPct(v)} %` : '–') }),
      rps: new Chart($('c-rps'), { kind: 'area', fmt: (v) => fmt(v, v < 10 ? 1 : 0), tipFmt: (v) => `${fmt(v)} /s` }),
      lat: new Chart($('c-lat'), { kind: 'line', log: true, fmt: (v) => `${v >= 1 ? v : v.toPrecision(1)} ms`, tipFmt: (v) => `${fmtMs(v)} ms` }),
      l1: new Chart($('c-l1'), { kind: 'area', bytes: true, fmt: (v) => fmtBytes(v).join(' '), tipFmt: (v) => fmtBytes(v).join(' ') }),
      swr: new Chart($('c-swr'), { kind: 'bars', fmt: (v) => fmt(v, v < 10 ? 1 : 0), tipFmt: (v) => `${fmt(v, 2)} /s` }),
    };
  }

  function kpi(id, value, unit, sub, level) {
    const k = $(id);
    k.querySelector('.v').textContent = value;
    k.querySelector('.u').textContent = unit;
    k.querySelector('.s').textContent = sub;
    k.classList.remove('good', 'warn', 'bad');
    if (level) k.classList.add(level);
  }

  function renderKpis(f) {
    const s = f.summary || {};
    const r = s.hit_ratio;
    if (!f.cache) kpi('k-ratio', 'off', '', 'cache turned off (--no-cache)', 'warn');
    else kpi('k-ratio', fmtPct(r), finite(r) ? '%' : '', finite(r)
      ? `${group(s.hits || 0)} hits · ${group(s.misses || 0)} misses` : 'no lookups in the last minute',
    !finite(r) ? '' : r >= 0.9 ? 'good' : r >= 0.7 ? 'warn' : 'bad');
    const http = s.http || {};
    kpi('k-rps', fmt(s.rps), 'req/s',
      `errors ${fmt(s.errors_ps)}/s · ${group(http.connections || 0)} connections`,
      s.errors_ps > 0 ? 'bad' : '');
    const c = s.cached_ms || {}, u = s.uncached_ms || {};
    kpi('k-cached', fmtMs(c.p99), 'ms', `p50 ${fmtMs(c.p50)} · p95 ${fmtMs(c.p95)} ms`, '');
    kpi('k-uncached', fmtMs(u.p99), 'ms', `p50 ${fmtMs(u.p50)} · p95 ${fmtMs(u.p95)} ms`, '');
    $('k-cached').title = `${group(c.count || 0)} cached answers in the last minute`;
    $('k-uncached').title = `${group(u.count || 0)} uncached answers in the last minute`;
    const l1 = s.l1 || {};
    const [bv, bu] = fmtBytes(l1.bytes);
    const full = l1.max_bytes > 0 ? l1.bytes / l1.max_bytes : 0;
    kpi('k-l1', bv, bu, `of ${fmtBytes(l1.max_bytes).join(' ')} · ${group(l1.entries || 0)} entries`,
      full > 0.95 ? 'warn' : '');
    $('k-l1').querySelector('.fill').style.width = `${Math.min(100, full * 100).toFixed(1)}%`;
    const rd = s.redis || {};
    if (!rd.configured) kpi('k-redis', 'off', '', 'L1 only: no Redis configured', '');
    else if (rd.breaker_open) kpi('k-redis', 'Breaker open', '', `${group(rd.errors_window || 0)} errors last min · L2 skipped`, 'bad');
    else if (!rd.bus_connected) kpi('k-redis', 'Bus down', '', 'L1 bypassed until resubscribed', 'warn');
    else kpi('k-redis', 'OK', '', `p99 ${fmtMs(rd.p99_ms)} ms · ${group(rd.errors_window || 0)} errors/min`, 'good');
  }

  function renderCharts(f) {
    const s = f.series || {};
    const t = s.t || [];
    const nsNames = Object.keys(s.ns_hit_ratio || {}).sort();
    const nsSeries = nsNames.map((n) => ({ name: n, color: colorOf(n), values: s.ns_hit_ratio[n] }));
    charts.ratio.set(t, nsSeries);
    const last = (arr) => (arr && arr.length ? arr[arr.length - 1] : null);
    legend('l-ratio', nsSeries.map((x) => ({ name: x.name, color: x.color, value: finite(last(x.values)) ? `${fmtPct(last(x.values))} %` : '–' })));

    const rps = [{ name: 'requests', color: cssVar('--accent') || CACHED, values: s.rps || [], fill: true, width: 2 },
      { name: 'lookups', color: '#a78bfa', values: s.lookups_ps || [], width: 1.25, dash: [4, 3] },
      { name: '5xx', color: cssVar('--bad') || '#f87171', values: s.errors_ps || [], width: 1.5 }];
    charts.rps.set(t, rps);
    legend('l-rps', rps.map((x) => ({ name: x.name, color: x.color, dash: !!x.dash, value: `${fmt(last(x.values))}/s` })));

    const cm = s.cached_ms || {}, um = s.uncached_ms || {};
    const lat = [
      { name: 'cached p50', color: CACHED, values: cm.p50 || [], width: 1.25 },
      { name: 'cached p95', color: CACHED, values: cm.p95 || [], width: 2 },
      { name: 'cached p99', color: CACHED, values: cm.p99 || [], width: 1.5, dash: [5, 4] },
      { name: 'uncached p50', color: UNCACHED, values: um.p50 || [], width: 1.25 },
      { name: 'uncached p95', color: UNCACHED, values: um.p95 || [], width: 2 },
      { name: 'uncached p99', color: UNCACHED, values: um.p99 || [], width: 1.5, dash: [5, 4] },
    ];
    charts.lat.set(t, lat);
    legend('l-lat', [
      { name: 'cached (L1/L2 hit)', color: CACHED },
      { name: 'uncached (miss → database)', color: UNCACHED },
      { name: 'p50 thin · p95 thick · p99 dashed', color: cssVar('--faint'), dash: true },
      { name: 'p99 now', color: CACHED, value: `${fmtMs(last(cm.p99))} ms` },
      { name: '', color: UNCACHED, value: `${fmtMs(last(um.p99))} ms` },
      { name: 'answers last min', color: CACHED, value: group(((f.summary || {}).cached_ms || {}).count || 0) },
      { name: '', color: UNCACHED, value: group(((f.summary || {}).uncached_ms || {}).count || 0) },
    ]);

    const l1 = [{ name: 'L1 bytes', color: '#38bdf8', values: s.l1_bytes || [], fill: true, width: 2 }];
    charts.l1.set(t, l1);
    const sum = f.summary || {};
    legend('l-l1', [{ name: 'bytes', color: '#38bdf8', value: fmtBytes(last(s.l1_bytes)).join(' ') },
      { name: 'entries', color: '#a78bfa', value: group(last(s.l1_entries) || 0) },
      { name: 'evicted', color: '#fb7185', value: group((sum.l1 || {}).evictions || 0) },
      { name: 'limit', color: cssVar('--faint'), value: fmtBytes((sum.l1 || {}).max_bytes).join(' ') }]);

    const swr = [{ name: 'stale served', color: '#fbbf24', values: s.stale_ps || [] },
      { name: 'refreshes', color: '#2dd4bf', values: s.refresh_ps || [] }];
    charts.swr.set(t, swr);
    legend('l-swr', [{ name: 'stale served', color: '#fbbf24', value: `${group(sum.stale_served || 0)} last min` },
      { name: 'background refreshes', color: '#2dd4bf', value: `${group(sum.refreshes || 0)} last min` },
      { name: 'dropped', color: cssVar('--bad'), value: group(sum.refresh_dropped || 0) }]);

    for (const [id, ch] of Object.entries(charts)) {
      state.charts[id] = ch.stats;
      ch.c.dataset.points = String(ch.stats.points);
      ch.c.dataset.nonzero = String(ch.stats.nonzero);
    }
  }

  function cell(text, cls) {
    return el('td', cls, text);
  }

  // A hit ratio as a number and a bar.
  function ratioCell(r, color) {
    const td = el('td', 'ratio');
    const bar = el('span', 'rbar');
    const track = el('span', 'track');
    const fill = el('span', 'fill');
    fill.style.width = finite(r) ? `${(r * 100).toFixed(1)}%` : '0';
    fill.style.background = color;
    track.appendChild(fill);
    bar.append(el('span', '', finite(r) ? `${fmtPct(r)} %` : '–'), track);
    td.appendChild(bar);
    return td;
  }

  // Hit ratio by route and by tag family: the feed's rows, busiest first (it sorts them).
  function renderRatios(f) {
    const s = f.summary || {};
    for (const [id, rows, key, inval] of [['routes', s.routes, 'route', false], ['families', s.tag_families, 'family', true]]) {
      const body = $(id).tBodies[0];
      body.replaceChildren();
      if (!rows || !rows.length) {
        const tr = el('tr');
        const td = el('td', 'empty', f.cache ? 'No cached answers yet.' : 'The cache is turned off.');
        td.colSpan = inval ? 6 : 5;
        tr.appendChild(td);
        body.appendChild(tr);
        continue;
      }
      for (const r of rows) {
        const tr = el('tr');
        const t = r.totals || {};
        tr.title = `since start: ${t.hit_ratio == null ? '–' : `${fmtPct(t.hit_ratio)} %`} of ${group((t.hits || 0) + (t.stale || 0) + (t.misses || 0))} (${group(t.hits || 0)} hits, ${group(t.stale || 0)} stale, ${group(t.misses || 0)} misses)`;
        const num = (v) => cell(group(v || 0), v ? '' : 'zero');
        tr.append(cell(r[key], 'l'), ratioCell(r.hit_ratio, colorOf(r[key])), num(r.hits), num(r.stale), num(r.misses));
        if (inval) tr.append(num(r.invalidations));
        body.appendChild(tr);
      }
    }
  }

  function renderTable(f) {
    const body = $('ns').tBodies[0];
    const rows = ((f.summary || {}).namespaces || []).slice().sort((a, b) => b.lookups_ps - a.lookups_ps || a.name.localeCompare(b.name));
    body.replaceChildren();
    if (!rows.length) {
      const tr = el('tr');
      const td = el('td', 'empty', f.cache ? 'No cache lookups yet.' : 'The cache is turned off.');
      td.colSpan = 11;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    for (const n of rows) {
      const tr = el('tr');
      const t = n.totals || {};
      tr.title = `since start: ${group(t.l1_hits || 0)} L1 hits, ${group(t.l2_hits || 0)} L2 hits, ${group(t.misses || 0)} misses, ${group(t.stale_served || 0)} stale, ${group(t.refreshes || 0)} refreshes`;
      const name = el('td', 'l ns');
      const sw = el('span', 'sw');
      sw.style.background = colorOf(n.name);
      name.append(sw, document.createTextNode(n.name));
      const num = (v, alert) => cell(group(v || 0), v ? (alert ? 'alert' : '') : 'zero');
      tr.append(name, ratioCell(n.hit_ratio, colorOf(n.name)), num(n.l1_hits), num(n.l2_hits), num(n.misses), num(n.coalesced),
        num(n.stale_served), num(n.refreshes), num(n.load_errors, true), num(n.invalidations),
        cell(fmt(n.lookups_ps), n.lookups_ps ? '' : 'zero'));
      body.appendChild(tr);
    }
  }

  // The engine's top lists (summary.hot): one row per name, most counted first.
  function renderHot(id, list, empty) {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    if (!list || !list.length) {
      const tr = el('tr');
      const td = el('td', 'empty', empty);
      td.colSpan = 4;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    for (const it of list) {
      const tr = el('tr');
      const name = el('td', 'l', it.name);
      name.title = it.name;
      const ratio = el('td', 'ratio');
      const bar = el('span', 'rbar');
      const track = el('span', 'track');
      const fill = el('span', 'fill');
      fill.style.width = finite(it.share) ? `${Math.min(100, it.share * 100).toFixed(1)}%` : '0';
      track.appendChild(fill);
      bar.append(el('span', '', finite(it.share) ? `${fmtPct(it.share)} %` : '–'), track);
      ratio.appendChild(bar);
      tr.append(name, ratio, cell(group(it.count || 0)), cell(group(it.error || 0), it.error ? '' : 'zero'));
      body.appendChild(tr);
    }
  }

  function renderHealth(f) {
    const s = f.summary || {};
    const rd = s.redis || {}, http = s.http || {}, db = s.db || {}, log = s.access_log || {};
    const inv = s.invalidations || { tag: 0, key: 0, clear: 0 };
    const lag = s.bus_lag || {}, eng = s.engine || {};
    const items = [
      ['Circuit breaker', !rd.configured ? 'no Redis' : rd.breaker_open ? 'OPEN' : 'closed', !rd.configured ? '' : rd.breaker_open ? 'bad' : 'good',
        `${group(rd.breaker_opens || 0)} opens since start`],
      ['Invalidation bus', !rd.configured ? 'no Redis' : rd.bus_connected ? 'connected' : 'DOWN', !rd.configured ? '' : rd.bus_connected ? 'good' : 'bad',
        `${group(rd.bus_reconnects || 0)} reconnects`],
      ['Redis errors', `${group(rd.errors_window || 0)} last min`, rd.errors_window ? 'bad' : '', `${group(rd.errors || 0)} since start`],
      ['Redis round trip', `p50 ${fmtMs(rd.p50_ms)} · p99 ${fmtMs(rd.p99_ms)} ms`, '', 'last minute'],
      ['Invalidations', `${group(inv.tag + inv.key + inv.clear || 0)} last min`, '',
        `tag ${group(inv.tag || 0)} · key ${group(inv.key || 0)} · clear ${group(inv.clear || 0)} · ${group(rd.pending_invalidations || 0)} pending`],
      ['Database', `p50 ${fmtMs(db.p50_ms)} · p99 ${fmtMs(db.p99_ms)} ms`, '', `${db.dialect || ''} · ${group(db.queries || 0)} queries last min`],
      ['HTTP', `${group(http.connections || 0)} conn · ${group(http.in_flight || 0)} in flight`, http.queued > 0 ? 'warn' : '',
        `${group(http.queued || 0)} queued · ${group(http.rejected || 0)} rejected`],
      ['Access log', log.on ? `${group(log.lines || 0)} lines` : 'off', log.dropped ? 'warn' : '', `${group(log.dropped || 0)} dropped`],
      ['Bus delivery lag', lag.count ? `p50 ${fmtMs(lag.p50_ms)} · p99 ${fmtMs(lag.p99_ms)} ms` : 'none last min', '',
        `${group(lag.count || 0)} invalidations from other instances last min · ${group(lag.total || 0)} since start`],
      ['L1 admission', eng.admission ? 'on' : 'off', '',
        `${group(eng.admission_rejections_window || 0)} kept out last min · ${group(eng.admission_rejections || 0)} since start`],
      ['L2 compression', eng.compress_min_bytes ? `≥ ${group(eng.compress_min_bytes)} B` : 'off', eng.decode_errors ? 'warn' : '',
        `${group(eng.compressed_writes || 0)} records · ${fmtBytes(eng.compressed_saved_bytes || 0).join(' ')} saved · ${group(eng.decode_errors || 0)} undecodable`],
    ];
    const dl = $('health');
    dl.replaceChildren();
    for (const [k, v, cls, sub] of items) {
      const wrap = el('div');
      wrap.append(el('dt', '', k), el('dd', cls, v), el('dt', '', sub));
      dl.appendChild(wrap);
    }
  }

  function render(f) {
    renderKpis(f);
    renderCharts(f);
    renderTable(f);
    const hot = (f.summary || {}).hot || {};
    renderHot('hot-keys', hot.keys, f.cache ? 'No reads yet.' : 'The cache is turned off.');
    renderHot('hot-tags', hot.tags, 'No invalidations made here yet.');
    renderRatios(f);
    renderHealth(f);
    $('uptime').textContent = `up ${fmtAge((f.time - f.started) / 1000)}`;
  }

  // ---- the loop --------------------------------------------------------------------------
  function live(stateName, text) {
    $('live').dataset.state = stateName;
    $('live-text').textContent = text;
  }

  function banner(text, link) {
    const b = $('banner');
    if (!text) { b.hidden = true; return; }
    b.replaceChildren(document.createTextNode(text));
    if (link) {
      const a = el('a', '', link.text);
      a.href = link.href;
      b.append(' ', a);
    }
    b.hidden = false;
  }

  async function poll() {
    const started = performance.now();
    if (!state.paused) {
      try {
        const r = await fetch(FEED, { cache: 'no-store', credentials: 'same-origin', headers: { accept: 'application/json' } });
        if (r.status === 401 || r.status === 403) {
          live('error', 'signed out');
          banner(r.status === 401 ? 'Your session has ended.' : 'This page is for administrators.',
            { text: 'Sign in', href: '/login?next=/admin/cache' });
        } else if (!r.ok) {
          throw new Error(`HTTP ${r.status}`);
        } else {
          const f = await r.json();
          state.feed = f;
          state.updates++;
          state.lastOk = Date.now();
          banner(null);
          render(f);
          const d = new Date(f.time);
          live('ok', `live · ${d.toLocaleTimeString('en-GB')}`);
        }
      } catch (e) {
        state.failures++;
        live('error', 'connection lost, retrying');
      }
    }
    setTimeout(poll, Math.max(100, PERIOD_MS - (performance.now() - started)));
  }

  function theme(t) {
    document.documentElement.dataset.theme = t;
    try { localStorage.setItem('tc-monitor-theme', t); } catch { /* private mode */ }
    if (charts && state.feed) renderCharts(state.feed);
  }

  document.addEventListener('DOMContentLoaded', () => {
    let t = null;
    try { t = localStorage.getItem('tc-monitor-theme'); } catch { /* private mode */ }
    if (!t) t = window.matchMedia && window.matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark';
    document.documentElement.dataset.theme = t;
    setupCharts();
    $('theme').addEventListener('click', () => theme(document.documentElement.dataset.theme === 'light' ? 'dark' : 'light'));
    $('pause').addEventListener('click', (ev) => {
      state.paused = !state.paused;
      ev.currentTarget.setAttribute('aria-pressed', String(state.paused));
      ev.currentTarget.textContent = state.paused ? 'Resume' : 'Pause';
      live(state.paused ? 'paused' : 'wait', state.paused ? 'paused' : 'resuming…');
    });
    let resizeTimer = 0;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => Object.values(charts).forEach((c) => c.draw()), 100);
    });
    poll();
  });
})();
