'use strict';
// Turns the runs into medians, ratios and spreads; checks the targets;
// renders the terminal table and the SVG chart of ratios.

const IMPL_LABEL = { rs: 'rs-cluster', node: 'node:cluster', single: 'one process' };

// `better` is the direction that counts as an improvement.
const METRICS = [
  { key: 'rps', label: 'req/s', digits: 0, better: 'higher' },
  { key: 'p50Ms', label: 'p50 latency ms', digits: 2, better: 'lower' },
  { key: 'p99Ms', label: 'p99 latency ms', digits: 2, better: 'lower' },
  { key: 'cpuUsPerReq', label: 'server CPU µs/req', digits: 1, better: 'lower' },
  { key: 'syscallsPerReq', label: 'server syscalls/req', digits: 1, better: 'lower' },
  { key: 'primaryCores', label: 'primary CPU cores', digits: 3, better: 'lower' },
  { key: 'primaryRssMb', label: 'primary RSS MB', digits: 1, better: 'lower' },
  { key: 'shareMaxMin', label: 'worker share max/min', digits: 3, better: 'lower' },
  { key: 'connShareMaxMin', label: 'worker conns max/min', digits: 3, better: 'lower' },
  { key: 'startupMs', label: 'startup ms', digits: 1, better: 'lower' },
  { key: 'startupCpuMs', label: 'startup CPU ms (all procs)', digits: 0, better: 'lower' },
  { key: 'slow', label: 'requests > 1.5 s', digits: 0, better: 'lower' },
  { key: 'afterStallShare', label: 'stalled worker share after', digits: 2, better: 'higher' },
  { key: 'errors', label: 'client errors', digits: 0, better: 'lower' },
];
const METRIC = Object.fromEntries(METRICS.map((m) => [m.key, m]));

// Which metrics the table shows per kind of scenario (the JSON has them all).
const SHOWN = {
  load: ['rps', 'p50Ms', 'p99Ms', 'cpuUsPerReq', 'syscallsPerReq', 'primaryCores', 'primaryRssMb', 'shareMaxMin', 'connShareMaxMin', 'errors'],
  startup: ['startupMs', 'startupCpuMs'],
  stall: ['slow', 'afterStallShare', 'rps', 'p99Ms', 'shareMaxMin', 'errors'],
};

function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function spread(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (v.length === 0) return null;
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length };
}

function ratio(a, b) {
  if (a == null || b == null) return null;
  if (b === 0) return a === 0 ? 1 : Infinity;
  return a / b;
}

// summary[scenario][metric] = { rs: spread, node: spread, single: spread,
// ratio: { median: median(rs)/median(node), min, max over per-round ratios } }
function summarize(runs) {
  const summary = {};
  const ok = runs.filter((r) => r.ok);
  for (const scenario of [...new Set(ok.map((r) => r.scenario))]) {
    const mine = ok.filter((r) => r.scenario === scenario);
    const out = {};
    for (const m of METRICS) {
      const entry = {};
      for (const impl of ['rs', 'node', 'single']) {
        const s = spread(mine.filter((r) => r.impl === impl).map((r) => r.metrics[m.key]));
        if (s) entry[impl] = s;
      }
      if (!entry.rs && !entry.node && !entry.single) continue;
      if (entry.rs && entry.node) {
        const perRound = [];
        for (const round of [...new Set(mine.map((r) => r.round))]) {
          const a = mine.find((r) => r.round === round && r.impl === 'rs');
          const b = mine.find((r) => r.round === round && r.impl === 'node');
          if (a && b) perRound.push(ratio(a.metrics[m.key], b.metrics[m.key]));
        }
        const finite = perRound.filter((x) => x != null && Number.isFinite(x));
        entry.ratio = {
          median: ratio(entry.rs.median, entry.node.median),
          min: finite.length ? Math.min(...finite) : null,
          max: finite.length ? Math.max(...finite) : null,
        };
      }
      out[m.key] = entry;
    }
    summary[scenario] = out;
  }
  return summary;
}

const get = (summary, scenario, metric, impl) => summary[scenario]?.[metric]?.[impl]?.median ?? null;

// Same-round ratio of rs in one scenario to node in another.
function crossRatio(runs, rsScenario, nodeScenario, metric) {
  const ok = runs.filter((r) => r.ok);
  const per = [];
  for (const round of [...new Set(ok.map((r) => r.round))]) {
    const a = ok.find((r) => r.round === round && r.impl === 'rs' && r.scenario === rsScenario);
    const b = ok.find((r) => r.round === round && r.impl === 'node' && r.scenario === nodeScenario);
    if (a && b) per.push(ratio(a.metrics[metric], b.metrics[metric]));
  }
  return per.length ? { min: Math.min(...per), max: Math.max(...per) } : null;
}

function fmtRatio(x) {
  if (x == null) return '–';
  if (!Number.isFinite(x)) return '∞';
  return `${x.toFixed(2)}×`;
}

// The targets. `pass` is null when a scenario it needs was not run. `unit`:
// 'ratio' (rs-cluster / node:cluster), 'abs' (a value of rs-cluster's own,
// shown with `digits`) or 'diff' (rs-cluster minus node:cluster).
function checkTargets(summary, runs, workers) {
  const t = [];
  // `chart`: the `scenario:metric` bar of the chart this target is drawn on.
  const add = (id, text, value, threshold, op, { detail = null, chart = null, unit = 'ratio', digits = 2, informational = false } = {}) => {
    let pass = null;
    if (value != null) pass = op === '>=' ? value >= threshold : value <= threshold;
    t.push({ id, text, value, threshold, op, pass, unit, digits, informational, detail: detail || null, chart });
  };
  const r = (sc, m) => summary[sc]?.[m]?.ratio ?? null;
  const rounds = (x) => x && `rounds ${fmtRatio(x.min)}–${fmtRatio(x.max)}`;
  // rs-cluster round-robin against node:cluster's SCHED_NONE, both Connection: close.
  const vsNone = (metric) => ({
    value: ratio(get(summary, 'close-rr', metric, 'rs'), get(summary, 'close-none', metric, 'node')),
    detail: rounds(crossRatio(runs, 'close-rr', 'close-none', metric)),
  });

  const closeRr = r('close-rr', 'rps');
  add('close-rr-rps', 'Connection: close, RR req/s vs node:cluster RR', closeRr?.median ?? null, 1.8, '>=',
    { detail: rounds(closeRr), chart: 'close-rr:rps' });
  const rpsNone = vsNone('rps');
  add('close-rr-vs-node-none', 'Connection: close, RR req/s vs node:cluster SCHED_NONE', rpsNone.value, 0.95, '>=',
    { detail: rpsNone.detail });

  const cpu = r('close-rr', 'cpuUsPerReq');
  add('cpu-per-req', 'server CPU/request, Connection: close RR, vs node:cluster RR', cpu?.median ?? null, 0.5, '<=',
    { detail: rounds(cpu), chart: 'close-rr:cpuUsPerReq' });
  const cpuNone = vsNone('cpuUsPerReq');
  add('cpu-per-req-vs-node-none', 'server CPU/request, Connection: close RR, vs node:cluster SCHED_NONE', cpuNone.value, 1.05, '<=',
    { detail: cpuNone.detail });
  const cpuKa = r('ka-rr', 'cpuUsPerReq');
  if (cpuKa) {
    add('cpu-per-req-ka', 'server CPU/request, keep-alive RR, vs node:cluster RR (information only)', cpuKa.median, 0.5, '<=',
      { detail: rounds(cpuKa), informational: true });
  }

  const sys = summary['close-rr']?.syscallsPerReq;
  const nodeSys = [['RR', get(summary, 'close-rr', 'syscallsPerReq', 'node')], ['SCHED_NONE', get(summary, 'close-none', 'syscallsPerReq', 'node')]]
    .filter(([, v]) => v != null).map(([k, v]) => `${k} ${v.toFixed(1)}`);
  add('syscalls-per-req', 'server syscalls/request, Connection: close RR', sys?.rs?.median ?? null, 12, '<=', {
    unit: 'abs',
    digits: 1,
    detail: sys?.rs && `rounds ${sys.rs.min.toFixed(1)}–${sys.rs.max.toFixed(1)}${nodeSys.length ? `; node:cluster ${nodeSys.join(', ')}` : ''}`,
  });

  // Primary CPU: the worst rs-cluster load scenario that was run.
  let worst = null;
  for (const sc of ['close-rr', 'ka-rr', 'close-none', 'ka-none']) {
    const v = summary[sc]?.primaryCores?.rs;
    if (v && (worst === null || v.median > worst.value)) worst = { sc, value: v.median, max: v.max };
  }
  add('primary-cpu', 'rs-cluster primary CPU (cores), worst load scenario', worst?.value ?? null, 0.1, '<=',
    { unit: 'abs', digits: 3, detail: worst && `${worst.sc}, rounds max ${worst.max.toFixed(3)}` });

  for (const sc of ['ka-rr', 'ka-none']) {
    const k = r(sc, 'rps');
    if (k || summary[sc]) {
      add(`${sc}-rps`, `keep-alive ${sc.endsWith('rr') ? 'RR' : 'SCHED_NONE'} req/s vs node:cluster`, k?.median ?? null, 1, '>=',
        { detail: rounds(k), chart: `${sc}:rps` });
    }
  }
  if (!summary['ka-rr'] && !summary['ka-none']) add('ka-rps', 'keep-alive req/s vs node:cluster', null, 1, '>=');

  const st = r('startup', 'startupMs');
  const stc = r('startup', 'startupCpuMs');
  add('startup', 'startup (start to all workers listening) vs node:cluster', st?.median ?? null, 1.05, '<=',
    { detail: st && `${rounds(st)}${stc ? `; CPU spent starting: ${fmtRatio(stc.median)}` : ''}`, chart: 'startup:startupMs' });

  // Routing fairness, as the target is stated: requests per worker under
  // Connection: close, where every request is a routed connection. (Under
  // keep-alive, 64 connections opened at once make a coarse sample; it is
  // shown in the table as "worker conns max/min".) Worst round.
  const shareOf = (sc) => summary[sc]?.shareMaxMin?.rs ?? null;
  const share = shareOf('close-rr');
  add('share', `rs-cluster per-worker share max/min, Connection: close RR, ${workers} workers (worst round)`, share ? share.max : null, 1.1, '<=',
    { unit: 'abs', digits: 3, detail: share && 'close-rr requests' });
  const eight = summary['close-rr-8'] ? 'close-rr-8' : workers === 8 ? 'close-rr' : null;
  const share8 = eight && shareOf(eight);
  add('share-8', 'rs-cluster per-worker share max/min, Connection: close RR, 8 workers (worst round)', share8 ? share8.max : null, 1.05, '<=',
    { unit: 'abs', digits: 3, detail: share8 && `${eight} requests` });

  // Metrics on against off, rs-cluster alone, same run.
  const onOff = (metric) => ratio(get(summary, 'close-rr-metrics', metric, 'rs'), get(summary, 'close-rr', metric, 'rs'));
  add('metrics-rps', 'metrics on (scraped every second) vs off: Connection: close RR req/s', onOff('rps'), 0.98, '>=');
  add('metrics-primary-cpu', 'metrics on vs off: primary CPU', onOff('primaryCores'), 1.05, '<=');

  const rsSlow = get(summary, 'stall', 'slow', 'rs');
  const nodeSlow = get(summary, 'stall', 'slow', 'node');
  const sl = rsSlow == null || nodeSlow == null ? null : rsSlow - nodeSlow;
  add('stall', 'stalled worker: requests > 1.5 s, rs-cluster minus node:cluster', sl, 0, '<=',
    { unit: 'diff', detail: sl != null && `rs ${rsSlow} vs node ${nodeSlow} (medians)` });
  return t;
}

// Per implementation, the median over rounds of each syscall's count per
// request in `scenario` (the runs that counted them one by one), the rest as
// `other`; null if no run did.
function syscallBreakdown(runs, scenario) {
  const out = {};
  for (const impl of ['rs', 'node']) {
    const per = runs
      .filter((r) => r.ok && r.scenario === scenario && r.impl === impl && r.detail.syscalls?.bySyscall && r.detail.syscalls.requests > 0)
      .map((r) => {
        const { total, bySyscall } = r.detail.syscalls;
        const n = r.detail.syscalls.requests;
        const listed = Object.values(bySyscall).reduce((a, b) => a + b, 0);
        return { total: total / n, other: (total - listed) / n, ...Object.fromEntries(Object.entries(bySyscall).map(([k, v]) => [k, v / n])) };
      });
    if (per.length === 0) continue;
    const names = Object.keys(per[0]).filter((k) => k !== 'total' && k !== 'other');
    const med = (k) => median(per.map((p) => p[k]));
    out[impl] = {
      rounds: per.length,
      total: med('total'),
      other: med('other'),
      perRequest: Object.fromEntries(names.map((k) => [k, med(k)]).sort((a, b) => b[1] - a[1])),
    };
  }
  return Object.keys(out).length > 0 ? out : null;
}

// One line per implementation: the total, then each syscall that averages
// at least one call in 20 requests, most frequent first.
function renderBreakdown(breakdown, scenario) {
  const lines = [`syscalls per request, ${scenario} (medians over rounds):`];
  for (const impl of ['rs', 'node']) {
    const b = breakdown[impl];
    if (!b) continue;
    const parts = Object.entries(b.perRequest).filter(([, v]) => v >= 0.05).map(([k, v]) => `${k} ${v.toFixed(2)}`);
    if (b.other >= 0.05) parts.push(`other ${b.other.toFixed(2)}`);
    lines.push(`  ${pad(IMPL_LABEL[impl], 12)} ${b.total.toFixed(1)} = ${parts.join(', ')}`);
  }
  return lines.join('\n');
}

function fmt(v, digits) {
  if (v == null) return '–';
  if (!Number.isFinite(v)) return '∞';
  return v.toFixed(digits);
}

function cell(s, digits) {
  if (!s) return '–';
  if (s.n === 1) return fmt(s.median, digits);
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

function pad(s, n, right = false) {
  s = String(s);
  const len = [...s].length;
  if (len >= n) return s;
  return right ? ' '.repeat(n - len) + s : s + ' '.repeat(n - len);
}

function renderTable(summary, scenarios) {
  const rows = [['scenario', 'metric', 'rs-cluster', 'node:cluster', 'rs/node', 'one process']];
  for (const sc of scenarios) {
    const s = summary[sc.name];
    if (!s) {
      rows.push([sc.name, '(no successful run)', '', '', '', '']);
      continue;
    }
    let first = true;
    for (const key of SHOWN[sc.kind]) {
      const e = s[key];
      if (!e) continue;
      if (key === 'errors' && !['rs', 'node', 'single'].some((i) => e[i] && e[i].max > 0)) continue;
      // With Connection: close every request is a connection: one row says it.
      if (key === 'connShareMaxMin' && !sc.keepAlive) continue;
      if (sc.single && !e.single) continue;
      const m = METRIC[key];
      const rr = e.ratio;
      rows.push([
        first ? sc.name : '',
        m.label,
        cell(e.rs, m.digits),
        cell(e.node, m.digits),
        rr ? (rr.min != null && rr.min !== rr.max ? `${fmtRatio(rr.median)} (${fmtRatio(rr.min)}–${fmtRatio(rr.max)})` : fmtRatio(rr.median)) : '–',
        cell(e.single, m.digits),
      ]);
      first = false;
    }
  }
  // Drop the baseline column when no baseline ran.
  const hasSingle = rows.slice(1).some((r) => r[5] && r[5] !== '–');
  const cols = hasSingle ? 6 : 5;
  const widths = [];
  for (let c = 0; c < cols; c++) widths[c] = Math.max(...rows.map((r) => [...String(r[c] ?? '')].length));
  const lines = rows.map((r, i) => r.slice(0, cols).map((v, c) => pad(v ?? '', widths[c], c >= 2 && i > 0)).join('  '));
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return lines.join('\n');
}

function renderTargets(targets) {
  const lines = [];
  const show = (t, v) => (t.unit === 'ratio' ? fmtRatio(v) : t.unit === 'diff' ? `${v >= 0 ? '+' : ''}${v}` : v.toFixed(t.digits));
  for (const t of targets) {
    const mark = t.informational ? ' info' : t.pass === null ? ' n/a ' : t.pass ? ' PASS' : ' FAIL';
    const v = t.value == null ? '–' : show(t, t.value);
    const thr = `${t.op} ${t.unit === 'diff' ? t.threshold : show(t, t.threshold)}`;
    lines.push(`${mark}  ${t.text}: ${v}${t.informational ? '' : ` (target ${thr})`}${t.detail ? `  [${t.detail}]` : ''}`);
  }
  return lines.join('\n');
}

function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

// Horizontal bars of rs-cluster / node:cluster on a log scale (¼× … 4×),
// with the spread between rounds as whiskers and the targets as ticks.
function renderSvg(summary, { title, subtitle, targets }) {
  const chartRows = [];
  const targetAt = Object.fromEntries((targets || []).filter((x) => x.chart).map((x) => [x.chart, x.threshold]));
  for (const [sc, metrics] of Object.entries(summary)) {
    for (const key of ['rps', 'cpuUsPerReq', 'syscallsPerReq', 'p99Ms', 'primaryCores', 'primaryRssMb', 'startupMs', 'startupCpuMs', 'slow']) {
      const e = metrics[key];
      if (!e || !e.ratio || e.ratio.median == null) continue;
      if ((sc === 'startup') !== key.startsWith('startup')) continue;
      if (sc === 'stall' && !['slow', 'rps'].includes(key)) continue;
      // An idle primary (keep-alive, SCHED_NONE) makes a ratio of noise.
      if (key === 'primaryCores' && Math.max(e.rs?.median ?? 0, e.node?.median ?? 0) < 0.01) continue;
      chartRows.push({ sc, key, m: METRIC[key], r: e.ratio, target: targetAt[`${sc}:${key}`] });
    }
  }
  const rowH = 22;
  const left = 250;
  const plotW = 520;
  const right = 90;
  const top = 70;
  const W = left + plotW + right;
  const H = top + Math.max(1, chartRows.length) * rowH + 60;
  const LO = Math.log2(0.25);
  const HI = Math.log2(4);
  const x = (v) => {
    const c = Math.min(HI, Math.max(LO, Math.log2(Math.max(v, 1e-9))));
    return left + ((c - LO) / (HI - LO)) * plotW;
  };
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`);
  for (const tick of [0.25, 0.5, 1, 2, 4]) {
    const tx = x(tick);
    out.push(`<line x1="${tx}" y1="${top - 8}" x2="${tx}" y2="${H - 45}" stroke="${tick === 1 ? '#000' : '#ddd'}" stroke-width="${tick === 1 ? 1.5 : 1}"/>`);
    out.push(`<text x="${tx}" y="${H - 30}" text-anchor="middle" fill="#333">${tick}×</text>`);
  }
  out.push(`<text x="${left + plotW / 2}" y="${H - 12}" text-anchor="middle" fill="#333">rs-cluster / node:cluster (median of rounds; whiskers: per-round min–max; log scale)</text>`);
  chartRows.forEach((row, i) => {
    const y = top + i * rowH;
    const cy = y + rowH / 2;
    if (i > 0 && chartRows[i - 1].sc !== row.sc) {
      out.push(`<line x1="8" y1="${y}" x2="${W - 8}" y2="${y}" stroke="#bbb" stroke-dasharray="3,3"/>`);
    }
    const v = row.r.median;
    const good = row.m.better === 'higher' ? v >= 1 : v <= 1;
    const x1 = x(1);
    const xv = x(v);
    out.push(`<text x="${left - 8}" y="${cy + 4}" text-anchor="end">${esc(`${row.sc} · ${row.m.label}`)}</text>`);
    out.push(`<rect x="${Math.min(x1, xv)}" y="${y + 4}" width="${Math.max(1, Math.abs(xv - x1))}" height="${rowH - 8}" fill="${good ? '#4c9a52' : '#c8553d'}" fill-opacity="0.8"/>`);
    if (row.r.min != null && row.r.max != null && Number.isFinite(row.r.max)) {
      const a = x(row.r.min);
      const b = x(row.r.max);
      out.push(`<line x1="${a}" y1="${cy}" x2="${b}" y2="${cy}" stroke="#222"/>`);
      out.push(`<line x1="${a}" y1="${cy - 4}" x2="${a}" y2="${cy + 4}" stroke="#222"/>`);
      out.push(`<line x1="${b}" y1="${cy - 4}" x2="${b}" y2="${cy + 4}" stroke="#222"/>`);
    }
    if (row.target) {
      const tx = x(row.target);
      out.push(`<line x1="${tx}" y1="${y + 1}" x2="${tx}" y2="${y + rowH - 1}" stroke="#e08a00" stroke-width="3"><title>target ${row.target}×</title></line>`);
    }
    out.push(`<text x="${left + plotW + 8}" y="${cy + 4}">${esc(fmtRatio(v))}${row.m.better === 'higher' ? ' ↑' : ' ↓'}</text>`);
  });
  if (chartRows.length === 0) {
    out.push(`<text x="${W / 2}" y="${top + 12}" text-anchor="middle" fill="#999">no paired rs-cluster / node:cluster runs</text>`);
  }
  const pass = targets.filter((t) => t.pass === true && !t.informational).length;
  const fail = targets.filter((t) => t.pass === false && !t.informational).length;
  out.push(`<text x="8" y="${top - 14}" fill="#555">↑ higher is better, ↓ lower is better; green = rs-cluster better; orange tick = target. Targets: ${pass} pass, ${fail} fail</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

module.exports = {
  METRICS, IMPL_LABEL, summarize, checkTargets, syscallBreakdown, renderBreakdown, renderTable, renderTargets, renderSvg,
  median, fmtRatio,
};
