// Helpers for the monitoring tests: read /metrics, parse the Prometheus text format 0.0.4,
// check the rules a scraper relies on, and pick values out by name and labels.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;

function parseLabels(s) {
  const labels = {};
  if (!s) return labels;
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < s.length) {
    const m = LABEL.exec(s);
    if (!m) throw new Error(`bad label set {${s}}`);
    labels[m[1]] = m[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
  }
  return labels;
}

// { samples: [{ name, labels, value }], help: Map, type: Map }
export function parse(text) {
  const samples = [], help = new Map(), type = new Map();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) {
      const rest = line.slice(7);
      const sp = rest.indexOf(' ');
      help.set(sp < 0 ? rest : rest.slice(0, sp), sp < 0 ? '' : rest.slice(sp + 1));
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const parts = line.split(' ');
      type.set(parts[2], parts[3]);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const value = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    if (Number.isNaN(value) && m[4] !== 'NaN') throw new Error(`bad value: ${line}`);
    samples.push({ name: m[1], labels: parseLabels(m[3]), value });
  }
  return { samples, help, type };
}

const familyOf = (name, type) => {
  for (const suf of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suf) && type.get(name.slice(0, -suf.length)) === 'histogram') return name.slice(0, -suf.length);
  }
  return name;
};

// The rules: HELP and TYPE for every family, counters end in _total, no series twice,
// histogram buckets cumulative with +Inf equal to _count.
export function validate(text) {
  const { samples, help, type } = parse(text);
  const seen = new Set();
  const hist = new Map();
  for (const s of samples) {
    const fam = familyOf(s.name, type);
    assert.ok(type.has(fam), `no # TYPE for ${s.name}`);
    assert.ok(help.has(fam), `no # HELP for ${s.name}`);
    if (type.get(fam) === 'counter') assert.match(fam, /_total$/, `counter ${fam} must end in _total`);
    if (type.get(fam) === 'histogram') assert.doesNotMatch(fam, /_total$/);
    const key = `${s.name}{${Object.entries(s.labels).sort().map(([k, v]) => `${k}=${v}`).join(',')}}`;
    assert.ok(!seen.has(key), `series twice: ${key}`);
    seen.add(key);
    if (type.get(fam) === 'histogram') {
      const { le, ...rest } = s.labels;
      const id = `${fam}${JSON.stringify(Object.entries(rest).sort())}`;
      if (!hist.has(id)) hist.set(id, { buckets: [], count: null });
      const h = hist.get(id);
      if (s.name.endsWith('_bucket')) h.buckets.push([le === '+Inf' ? Infinity : Number(le), s.value]);
      if (s.name.endsWith('_count')) h.count = s.value;
    }
  }
  for (const [id, h] of hist) {
    for (let i = 1; i < h.buckets.length; i++) {
      assert.ok(h.buckets[i][0] > h.buckets[i - 1][0], `${id}: le not increasing`);
      assert.ok(h.buckets[i][1] >= h.buckets[i - 1][1], `${id}: buckets not cumulative`);
    }
    const inf = h.buckets[h.buckets.length - 1];
    assert.equal(inf[0], Infinity, `${id}: no +Inf bucket`);
    assert.equal(inf[1], h.count, `${id}: +Inf bucket != _count`);
  }
  return { samples, help, type };
}

// The sum of the samples called name whose labels include every one of want.
export function value(samples, name, want = {}) {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(want).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

export async function scrape(srv, headers = {}) {
  const r = await fetch(`${srv.base}/metrics`, { headers });
  const text = await r.text();
  return { status: r.status, headers: r.headers, text, ...(r.status === 200 ? parse(text) : { samples: [] }) };
}

// `promtool check metrics` (Debian's prometheus package) on text: '' when it is happy.
export function promtool(text) {
  const bin = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
  if (!bin) throw new Error('promtool not found: scripts/deps.sh installs the prometheus package');
  try {
    return execFileSync(bin, ['check', 'metrics'], { input: text, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
  } catch (e) {
    return `${e.stdout}${e.stderr}` || String(e);
  }
}

// Polls fn() until it returns a truthy value or ms pass; returns the last value.
export async function until(fn, ms = 5000, step = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, step));
  }
}

// logfmt: key=value or key="quoted \" value".
export function logfmt(line) {
  const out = {};
  const re = /([a-z_]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/g;
  let m;
  while ((m = re.exec(line)) !== null) out[m[1]] = m[2] !== undefined ? JSON.parse(`"${m[2]}"`) : m[3];
  return out;
}
