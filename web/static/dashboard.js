// The dashboard's widgets, refreshed through tRPC: GET /trpc/dashboard.summary (the same
// cached value the page was rendered from; private, max-age=30, stale-while-revalidate).
// Every value goes in through textContent or DOM attributes: nothing is parsed as HTML.
'use strict';

(() => {
  const root = document.getElementById('dash');
  if (!root) return;
  const uid = root.dataset.userId;
  const w = (name) => root.querySelector(`[data-w="${name}"]`);
  const text = (name, v) => { const el = w(name); if (el) el.textContent = String(v); };

  function list(name, entries) {
    const ul = w(name);
    if (!ul) return;
    ul.replaceChildren(...entries.map(([k, v, tag]) => {
      const li = document.createElement('li');
      const a = document.createElement('span');
      a.className = 'k';
      a.textContent = k;
      const b = document.createElement(tag || 'span');
      b.className = 'n';
      b.textContent = String(v);
      li.append(a, ' ', b);
      return li;
    }));
  }

  function day(ms) {
    return new Date(ms).toISOString().slice(0, 10);
  }

  function chart(daily) {
    const svg = w('chart');
    if (!svg) return;
    const max = Math.max(1, ...daily);
    const ns = 'http://www.w3.org/2000/svg';
    svg.replaceChildren(...daily.map((n, i) => {
      const h = Math.floor((n * 60) / max);
      const r = document.createElementNS(ns, 'rect');
      r.setAttribute('x', String(i * 10));
      r.setAttribute('y', String(60 - h));
      r.setAttribute('width', '8');
      r.setAttribute('height', String(h));
      const t = document.createElementNS(ns, 'title');
      t.textContent = String(n);
      r.append(t);
      return r;
    }));
  }

  async function refresh() {
    let r;
    try {
      r = await fetch('/trpc/dashboard.summary', { credentials: 'same-origin' });
    } catch {
      return;
    }
    if (r.status === 401) { location.replace('/login'); return; }
    if (!r.ok) return;
    const d = (await r.json()).result.data;
    // Never show another user's numbers: a different user means a different session.
    if (String(d.userId) !== uid) { location.reload(); return; }
    const sub = d.subscription;
    text('plan', sub.plan.name);
    text('status', sub.status);
    text('seats', sub.seats);
    text('events30d', d.usage.events30d);
    text('limit', d.usage.limit);
    text('percent', d.usage.percent.toFixed(1));
    const p = w('progress');
    if (p) p.value = d.usage.percent;
    text('total7', d.activity.last7d.total);
    list('kinds7', Object.entries(d.activity.last7d.byKind));
    list('recent', d.recent.map((a) => [a.kind, day(a.createdAt), 'time']));
    chart(d.activity.daily);
    document.getElementById('refreshed').textContent =
      `Refreshed through tRPC at ${new Date().toLocaleTimeString()}.`;
    root.dataset.refreshed = String((Number(root.dataset.refreshed) || 0) + 1);
  }

  document.getElementById('refresh').addEventListener('click', refresh);
  setInterval(refresh, 30000);
  // Restored from the back/forward cache: the session may have changed since.
  window.addEventListener('pageshow', (ev) => { if (ev.persisted) location.reload(); });
})();
