// The real Prometheus (Debian's package) scrapes tiercache: deploy/prometheus.yml, with its
// target, intervals and token file substituted, run as a child process on a loopback port
// with its storage in a temp dir. Proves: the target is "up" with no scrape error, the
// token works through credentials_file, and PromQL over our series gives a sane cache hit
// ratio, per-namespace rates and a latency quantile. Every wait is bounded.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, call, login, freePort, sleep } from './lib.mjs';
import { until } from './prom.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PROMETHEUS = ['/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((p) => existsSync(p));
const TOKEN = 'prom_e2e_token_0123456789abcdef';
const HIT_RATIO = 'sum(rate(tiercache_cache_hits_total[30s])) / (sum(rate(tiercache_cache_hits_total[30s])) '
  + '+ sum(rate(tiercache_cache_misses_total[30s])))';

describe('Prometheus scrapes tiercache', () => {
  let srv, prom, promBase, dir, log = '', demo;
  let stopLoad = false, load;

  before(async () => {
    assert.ok(PROMETHEUS, 'prometheus is installed (scripts/deps.sh: the prometheus package)');
    srv = await startServer({ extra: ['--metrics-token', TOKEN, '--access-log', 'off'] });
    demo = await login(srv);
    dir = mkdtempSync(join(tmpdir(), 'tc-prom-'));
    writeFileSync(join(dir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
    const cfg = readFileSync(join(ROOT, 'deploy', 'prometheus.yml'), 'utf8')
      .replace(/scrape_interval: 15s/, 'scrape_interval: 1s')
      .replace(/evaluation_interval: 15s/, 'evaluation_interval: 1s')
      .replace("'127.0.0.1:8080'", `'127.0.0.1:${srv.port}'`)
      .replace('    # authorization:', '    authorization:')
      .replace('    #   type: Bearer', '      type: Bearer')
      .replace('    #   credentials_file: /etc/prometheus/tiercache.token', `      credentials_file: ${join(dir, 'token')}`);
    assert.match(cfg, /credentials_file: \//, 'the example config has the token block');
    writeFileSync(join(dir, 'prometheus.yml'), cfg);
    const port = await freePort();
    promBase = `http://127.0.0.1:${port}`;
    prom = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h', '--log.level=warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    prom.stdout.on('data', (d) => { log += d; });
    prom.stderr.on('data', (d) => { log += d; });
    const ready = await until(async () => {
      if (prom.exitCode !== null) return false;
      try { return (await fetch(`${promBase}/-/ready`)).ok; } catch { return false; }
    }, 30000, 200);
    assert.ok(ready, `prometheus ready within 30 s:\n${log}`);
    // steady traffic while Prometheus scrapes: mostly hits, a few misses
    load = (async () => {
      let i = 0;
      while (!stopLoad) {
        await call(srv, 'user.me', { token: demo.token });
        await call(srv, 'blog.list', { input: { limit: 1 + (i % 3) } });
        if (++i % 40 === 0) await call(srv, 'user.update', { token: demo.token, input: { bio: `b${i}` } });
        await sleep(5);
      }
    })();
  });

  after(async () => {
    stopLoad = true;
    await load;
    if (prom && prom.exitCode === null) {
      const exited = new Promise((r) => prom.once('exit', r));
      prom.kill('SIGTERM');
      const t = setTimeout(() => prom.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(t);
    }
    if (srv) assert.equal(await srv.stop(), 0);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const api = async (path) => {
    const r = await fetch(`${promBase}${path}`);
    const j = await r.json();
    assert.equal(j.status, 'success', JSON.stringify(j));
    return j.data;
  };
  const query = async (q) => (await api(`/api/v1/query?query=${encodeURIComponent(q)}`)).result;

  it('the target is up, scraped without an error, through the bearer token', async () => {
    const t = await until(async () => {
      const d = await api('/api/v1/targets');
      const x = d.activeTargets.find((a) => a.labels.job === 'tiercache');
      return x && x.health === 'up' && x.lastScrape !== '0001-01-01T00:00:00Z' ? x : null;
    }, 30000, 250);
    assert.ok(t, `target up within 30 s:\n${log}`);
    assert.equal(t.health, 'up');
    assert.equal(t.lastError, '');
    assert.equal(t.scrapeUrl, `http://127.0.0.1:${srv.port}/metrics`);
    const samples = await query('scrape_samples_scraped{job="tiercache"}');
    assert.ok(Number(samples[0].value[1]) > 100, `samples per scrape: ${samples[0].value[1]}`);
  });

  it('PromQL: a sane cache hit ratio, per-namespace rates, a latency quantile', async () => {
    const r = await until(async () => {
      const res = await query(HIT_RATIO);
      return res.length === 1 && Number.isFinite(Number(res[0].value[1])) ? res : null;
    }, 40000, 500);
    assert.ok(r, `the hit ratio has a value within 40 s:\n${log}`);
    const ratio = Number(r[0].value[1]);
    assert.ok(ratio > 0.7 && ratio <= 1, `hit ratio ${ratio}`);

    const byNs = await query('sum by (namespace) (rate(tiercache_cache_hits_total[30s]))');
    const names = byNs.map((x) => x.metric.namespace);
    for (const ns of ['user', 'blog', 'session']) assert.ok(names.includes(ns), `${ns} in ${names}`);
    assert.ok(Number(byNs.find((x) => x.metric.namespace === 'user').value[1]) > 0);

    const inv = await until(async () => {
      const res = await query('sum(increase(tiercache_cache_invalidations_total{reason="tag",namespace="user"}[1m]))');
      return res.length && Number(res[0].value[1]) > 0 ? res : null;
    }, 20000, 500);
    assert.ok(inv, 'tag invalidations are visible');

    const q = await query('histogram_quantile(0.99, sum by (le) (rate(tiercache_http_request_duration_by_cache_seconds_bucket{cache="hit"}[30s])))');
    const p99 = Number(q[0].value[1]);
    assert.ok(p99 > 0 && p99 < 1, `cached p99 ${p99} s`);
    const up = await query('up{job="tiercache"}');
    assert.equal(up[0].value[1], '1');
  });
});
