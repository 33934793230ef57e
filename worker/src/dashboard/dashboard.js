// The worker's dashboard: reads /stats every INTERVAL_MS and draws it. No framework and no
// build step; the DOM is built with textContent and createElementNS only (no HTML strings),
// and every history it keeps is bounded.
"use strict";

(() => {
  const INTERVAL_MS = 2000;
  const HISTORY = 60; // points per sparkline: two minutes at the refresh interval
  const MAX_FUNCTIONS = 500; // rows (and per-function histories) drawn at most
  const MAX_ROWS = 500; // sandbox and zygote rows drawn at most
  const SVG = "http://www.w3.org/2000/svg";

  const series = { rate: [], live: [], memory: [] };
  const perFunction = new Map(); // name -> { calls, rates: [] }
  let previous = null; // { at, calls }

  const $ = (id) => document.getElementById(id);

  function push(values, v) {
    values.push(v);
    if (values.length > HISTORY) values.shift();
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function sparkline(values) {
    const w = 100, h = 24;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    if (values.length === 0) return svg;
    const max = Math.max(...values, 1e-9);
    const step = values.length > 1 ? w / (HISTORY - 1) : 0;
    const x0 = w - step * (values.length - 1);
    const pts = values.map((v, i) => `${(x0 + i * step).toFixed(2)},${(h - 1 - (v / max) * (h - 2)).toFixed(2)}`);
    const area = document.createElementNS(SVG, "polygon");
    area.setAttribute("points", `${x0.toFixed(2)},${h} ${pts.join(" ")} ${w},${h}`);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pts.join(" "));
    const title = document.createElementNS(SVG, "title");
    title.textContent = `last ${values.length} samples, max ${fmtNumber(max)}`;
    svg.append(title, area, line);
    return svg;
  }

  function fmtNumber(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (v >= 100 || Number.isInteger(v)) return Math.round(v).toLocaleString("en");
    return v.toFixed(v >= 10 ? 1 : 2);
  }

  function fmtMs(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
    return `${v >= 100 ? Math.round(v) : v.toFixed(v >= 10 ? 1 : 2)} ms`;
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return "–";
    if (s < 60) return `${s.toFixed(0)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  }

  function fmtMb(mb) {
    if (mb === null || mb === undefined) return "–";
    return mb >= 1024 ? `${(mb / 1024).toFixed(2)} GiB` : `${fmtNumber(mb)} MiB`;
  }

  function setChart(id, values) {
    $(id).replaceChildren(sparkline(values));
  }

  function fillTable(id, rows, limit, makeRow) {
    const body = $(id).tBodies[0];
    const shown = rows.slice(0, limit).map(makeRow);
    body.replaceChildren(...shown);
    const empty = $(`${id}-empty`);
    if (empty) empty.hidden = rows.length > 0;
  }

  function functionRows(lambdas, dt) {
    const names = Object.keys(lambdas || {});
    names.sort((a, b) => (lambdas[b].calls - lambdas[a].calls) || a.localeCompare(b));
    const shown = names.slice(0, MAX_FUNCTIONS);
    const keep = new Set(shown);
    for (const name of perFunction.keys()) if (!keep.has(name)) perFunction.delete(name);
    return shown.map((name) => {
      const f = lambdas[name];
      let entry = perFunction.get(name);
      if (!entry) {
        entry = { calls: f.calls, rates: [] };
        perFunction.set(name, entry);
      }
      const rate = dt > 0 ? Math.max(0, f.calls - entry.calls) / dt : 0;
      if (dt > 0) push(entry.rates, rate);
      entry.calls = f.calls;
      return { name, f, rate, rates: entry.rates };
    });
  }

  function render(s, at) {
    const w = s.worker || {};
    $("worker").textContent =
      `pid ${w.pid} · up ${fmtDuration(w.uptime_s)} · cgroup ${w.cgroup_version}`;

    const lambdas = s.lambdas || {};
    const totalCalls = Object.values(lambdas).reduce((sum, f) => sum + (f.calls || 0), 0);
    const dt = previous ? (at - previous.at) / 1000 : 0;
    const rate = dt > 0 ? Math.max(0, totalCalls - previous.calls) / dt : 0;
    if (dt > 0) push(series.rate, rate);
    previous = { at, calls: totalCalls };
    $("rate").textContent = dt > 0 ? fmtNumber(rate) : "–";
    setChart("rate-chart", series.rate);

    push(series.live, w.sandboxes_live || 0);
    $("live").textContent = fmtNumber(w.sandboxes_live || 0);
    setChart("live-chart", series.live);

    const cache = s.cache || {};
    push(series.memory, cache.memory_in_use_mb || 0);
    $("memory").textContent = `${fmtMb(cache.memory_in_use_mb)} / ${fmtMb(cache.memory_budget_mb)}`;
    const meter = $("memory-meter");
    meter.max = Math.max(cache.memory_budget_mb || 1, 1);
    meter.value = Math.min(cache.memory_in_use_mb || 0, meter.max);
    setChart("memory-chart", series.memory);

    const served = (cache.hits || 0) + (cache.misses || 0);
    $("hits").textContent = served ? `${((100 * cache.hits) / served).toFixed(1)} %` : "–";
    $("cache").textContent =
      `${cache.hits || 0} warm · ${cache.misses || 0} cold · ${cache.evictions || 0} evicted · ${cache.pauses || 0} paused`;

    const ic = s.import_cache || {};
    const zygotes = (ic.zygotes || []).filter((z) => !z.retired);
    $("zygote-count").textContent = ic.enabled ? fmtNumber(zygotes.length) : "off";
    $("zygote-sub").textContent = ic.enabled
      ? `${ic.forks || 0} forks · ${ic.fork_failures || 0} failed · ${fmtMb(ic.memory_mb)}`
      : "import cache disabled";

    const p = s.packages || {};
    const inProgress = p.in_progress || [];
    $("installs").textContent = fmtNumber(p.installs || 0);
    $("packages").textContent =
      `${p.resolves || 0} resolved · ${p.install_failures || 0} failed` +
      (inProgress.length ? ` · installing ${inProgress.length}` : "");

    const q = s.async;
    $("queued").textContent = q ? fmtNumber(q.queued) : "off";
    $("async").textContent = q
      ? `${q.running} running · ${q.succeeded} done · ${q.failed} failed`
      : "no async queue";

    fillTable("functions", functionRows(lambdas, dt), MAX_FUNCTIONS, ({ name, f, rate, rates }) => {
      const tr = document.createElement("tr");
      tr.dataset.function = name;
      const lat = f.latency_ms || {};
      const trend = document.createElement("td");
      trend.append(sparkline(rates));
      const cells = [
        ["name", cell(name)],
        ["calls", cell(fmtNumber(f.calls))],
        ["rate", cell(dt > 0 ? fmtNumber(rate) : "–")],
        ["trend", trend],
        ["cold_starts", cell(fmtNumber(f.cold_starts))],
        ["warm_starts", cell(fmtNumber(f.warm_starts))],
        ["errors", cell(fmtNumber(f.errors), f.errors ? "bad" : "")],
        ["p50", cell(fmtMs(lat.p50))],
        ["p90", cell(fmtMs(lat.p90))],
        ["p99", cell(fmtMs(lat.p99))],
        ["live", cell(fmtNumber(f.live))],
        ["idle", cell(f.paused ? `${f.idle} (${f.paused} paused)` : fmtNumber(f.idle))],
        ["waiting", cell(fmtNumber(f.waiting))],
      ];
      for (const [field, td] of cells) {
        td.dataset.field = field;
        tr.append(td);
      }
      return tr;
    });

    fillTable("sandboxes", s.sandboxes || [], MAX_ROWS, (b) => {
      const tr = document.createElement("tr");
      tr.dataset.sandbox = String(b.id);
      tr.append(cell(String(b.id)), cell(b.lambda, "text"), cell(String(b.state), "text"),
        cell(String(b.pid)), cell(fmtDuration(b.uptime_s)), cell(fmtNumber(b.calls)));
      return tr;
    });

    fillTable("zygotes", zygotes, MAX_ROWS, (z) => {
      const tr = document.createElement("tr");
      tr.dataset.zygote = String(z.id);
      tr.append(cell(String(z.id)), cell(z.parent === null ? "–" : String(z.parent)), cell(String(z.pid)),
        cell((z.packages || []).join(", ") || "(none)", "text"), cell(fmtNumber(z.forks)),
        cell(fmtMb(z.memory_mb)), cell(fmtDuration(z.uptime_s)), cell(fmtDuration(z.idle_s)));
      return tr;
    });

    const phases = Object.entries(s.timings || {});
    fillTable("phases", phases, MAX_ROWS, ([phase, t]) => {
      const tr = document.createElement("tr");
      tr.dataset.phase = phase;
      tr.append(cell(phase), cell(fmtNumber(t.count)), cell(fmtMs(t.mean_ms)), cell(fmtMs(t.p50_ms)),
        cell(fmtMs(t.p99_ms)), cell(fmtMs(t.max_ms)));
      return tr;
    });
  }

  async function tick() {
    const status = $("updated");
    try {
      const resp = await fetch("/stats", { cache: "no-store", headers: { Accept: "application/json" } });
      if (!resp.ok) throw new Error(`/stats answered ${resp.status}`);
      const stats = await resp.json();
      const at = Date.now();
      render(stats, at);
      status.className = "status";
      status.textContent = `updated ${new Date(at).toLocaleTimeString("en-GB")}`;
    } catch (err) {
      status.className = "status error";
      status.textContent = `cannot read /stats: ${err.message}`;
    } finally {
      setTimeout(tick, INTERVAL_MS);
    }
  }

  tick();
})();
