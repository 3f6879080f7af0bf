/// <reference lib="dom" />
'use strict';
// The status page (GET / on the metrics endpoint, js/metrics-server.js):
// reads `stats` every second, relative to the page, so it works under a
// reverse proxy's path prefix, and draws what it read. Rates, the recent
// hand-off quantiles and the events (reloads, restarts by reason, reroutes by
// reason) come from successive answers' counters: the primary keeps no state
// for the page, and while no page is open it does nothing for one. The last
// 5 minutes stay in this tab's memory. Every value goes into the page as
// text, never as markup. An answer that is not /stats, or none within 1.5 s,
// shows as "not answering since …", and polling goes on.
{
  const view = /** @type {typeof import('./view')} */ (/** @type {any} */ (globalThis).rsClusterView);
  const POLL_MS = 1000;
  // A primary that takes longer is stuck: one stopped for 3 s shows as such.
  const TIMEOUT_MS = 1500;
  const HISTORY_MS = 5 * 60 * 1000;
  // Points further apart than this were not read in between: the line breaks.
  const GAP_MS = 2500;
  const MAX_EVENTS = 200;
  // Per tab, and per page where one host serves several clusters under prefixes.
  const TOKEN_KEY = `rs-cluster-token ${location.pathname}`;

  /** @typedef {import('../../index').Stats} Stats */
  /**
   * @typedef {{ t: number, rps: number | null, p99: number | null,
   *   workers: Record<number, { acc: number | null, lag: number, rss: number | null }> }} Sample
   * @typedef {{ t: number, kind: 'reload' | 'restart' | 'reroute', reason: string, n: number }} Event
   */

  /** @type {Stats | null} */
  let prev = null;
  /** @type {Sample[]} */
  const history = [];
  /** @type {Event[]} */
  const events = [];
  let token = sessionStorage.getItem(TOKEN_KEY);
  /** @type {number | null} */
  let downSince = null;

  /** @param {string} id */
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
  /**
   * @param {HTMLElement} parent
   * @param {string} tag
   * @param {string} [text]
   * @param {string} [cls]
   */
  function add(parent, tag, text, cls) {
    const el = parent.appendChild(document.createElement(tag));
    if (text !== undefined) el.textContent = text;
    if (cls) el.className = cls;
    return el;
  }
  /** @param {number} t */
  const time = (t) => new Date(t).toTimeString().slice(0, 8);
  /** @param {number | null} v */
  const num = (v, digits = 0) => (v == null ? '-' : v.toFixed(digits));

  $('where').textContent = `${location.host}${location.pathname}`;

  // --- reading /stats -------------------------------------------------------

  // Enough of the shape that drawing it cannot fail on a missing part. The
  // connection counters are null without the native primary.
  /** @param {any} s */
  function isStats(s) {
    const objectOrNull = (/** @type {any} */ o) => typeof o === 'object';
    return s !== null && typeof s === 'object' && typeof s.time === 'number' && Array.isArray(s.workers) &&
      Array.isArray(s.listeners) && Array.isArray(s.handoffBounds) && typeof s.reloads === 'number' &&
      [s.primary, s.routing, s.restarts, s.totals].every((o) => o !== null && typeof o === 'object') &&
      objectOrNull(s.rerouted) && objectOrNull(s.totals.handoff) &&
      s.workers.every((w) => w !== null && typeof w === 'object' && typeof w.id === 'number' && objectOrNull(w.handoff));
  }

  // a - b, or null when either is unknown.
  /** @param {number | null} a @param {number | null | undefined} b */
  const minus = (a, b) => (a === null || b == null ? null : a - b);
  // A count over `dt` seconds as a rate, or null.
  /** @param {number | null} n @param {number} dt */
  const per = (n, dt) => (n === null || dt <= 0 ? null : n / dt);

  async function poll() {
    const started = Date.now();
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    let again = true;
    try {
      const res = await fetch('stats', {
        cache: 'no-store', signal: abort.signal, headers: token === null ? {} : { Authorization: `Bearer ${token}` },
      });
      if (res.status === 401) {
        again = false;
        askToken();
        return;
      }
      const text = await res.text();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      let stats;
      try {
        stats = JSON.parse(text);
      } catch {
        throw new Error('the answer is not JSON');
      }
      if (!isStats(stats)) throw new Error('the answer is not /stats');
      read(stats);
    } catch (err) {
      down(abort.signal.aborted ? `no answer within ${TIMEOUT_MS / 1000} s` : err.message);
    } finally {
      clearTimeout(timer);
      if (again) setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
    }
  }

  /** @param {string} why */
  function down(why) {
    downSince ??= Date.now();
    setConn('down', `stats not answering since ${time(downSince)}: ${why}`);
    document.body.classList.add('stale');
  }

  /**
   * @param {'live' | 'down' | 'auth' | 'wait'} state
   * @param {string} text
   */
  function setConn(state, text) {
    const conn = $('conn');
    conn.dataset.state = state;
    conn.textContent = text;
  }

  function askToken() {
    const form = /** @type {HTMLFormElement} */ ($('login'));
    $('login-bad').hidden = token === null;
    form.hidden = false;
    setConn('auth', 'stats asks for a token');
    $('token').focus();
  }

  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    token = /** @type {HTMLInputElement} */ ($('token')).value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $('login').hidden = true;
    setConn('wait', 'reading…');
    poll();
  });

  /** @param {Stats} s */
  function read(s) {
    // Another primary (a takeover) counts from 0: no rates across it.
    const p = prev !== null && prev.primary.pid === s.primary.pid && s.time > prev.time ? prev : null;
    const dt = p === null ? 0 : (s.time - p.time) / 1000;
    const before = new Map(p === null ? [] : p.workers.map((w) => [w.id, w]));
    /** @type {Sample} */
    const sample = {
      t: s.time,
      rps: p === null ? null : per(minus(s.totals.accepted, p.totals.accepted), dt),
      p99: p === null ? null : view.recentQuantile(0.99, s.totals.handoff, p.totals.handoff, s.handoffBounds),
      workers: {},
    };
    for (const w of s.workers) {
      const b = before.get(w.id);
      sample.workers[w.id] = { acc: per(minus(w.accepted, b?.accepted), dt), lag: w.eventLoopLag, rss: w.rss };
    }
    if (p !== null) noteEvents(s, p);
    history.push(sample);
    while (history[0].t < s.time - HISTORY_MS) history.shift();
    downSince = null;
    document.body.classList.remove('stale');
    setConn('live', `live · ${time(s.time)}`);
    draw(s, p, dt, before);
    prev = s;
  }

  /**
   * @param {Stats} s
   * @param {Stats} p
   */
  function noteEvents(s, p) {
    /** @param {Event['kind']} kind @param {string} reason @param {number} n */
    const note = (kind, reason, n) => { if (n > 0) events.push({ t: s.time, kind, reason, n }); };
    note('reload', '', s.reloads - p.reloads);
    for (const reason of Object.keys(s.restarts)) note('restart', reason, s.restarts[reason] - (p.restarts[reason] ?? 0));
    if (s.rerouted !== null && p.rerouted !== null) {
      for (const reason of Object.keys(s.rerouted)) note('reroute', reason, s.rerouted[reason] - (p.rerouted[reason] ?? 0));
    }
    events.splice(0, events.length - MAX_EVENTS);
  }

  // --- drawing ----------------------------------------------------------------

  /**
   * @param {Stats} s
   * @param {Stats | null} p
   * @param {number} dt
   * @param {Map<number, Stats['workers'][number]>} before
   */
  function draw(s, p, dt, before) {
    const last = history[history.length - 1];
    const t = s.totals;
    $('s-policy').textContent = s.routing.sticky === null ? s.routing.policy : `${s.routing.policy} (${s.routing.sticky})`;
    $('s-uptime').textContent = view.clock(s.primary.uptime);
    $('s-primary').textContent = `${s.primary.pid}`;
    $('s-primary').title = `RSS ${view.bytes(s.primary.rss)}, CPU ${s.primary.cpu.toFixed(1)} s`;
    const listening = s.workers.filter((w) => w.state === 'listening' && !w.stalled).length;
    $('s-workers').textContent = `${listening} / ${s.workers.length}`;
    $('s-workers').classList.toggle('alert', listening < s.workers.length);
    $('s-rps').textContent = num(last.rps);
    $('s-active').textContent = `${t.active ?? '-'} / ${t.pending ?? '-'}`;
    $('no-native').hidden = s.rerouted !== null;
    $('s-p99').textContent = view.seconds(last.p99);
    const r = s.restarts;
    $('s-restarts').textContent = `${r.crash + r.hang + r.memory + r.reload}`;
    $('s-restarts').title = `crash ${r.crash}, hang ${r.hang}, memory ${r.memory}, reload ${r.reload}`;
    $('s-restarts').classList.toggle('alert', r.crash + r.hang + r.memory > 0);
    $('s-reloads').textContent = `${s.reloads}`;
    const rerouted = Object.entries(s.rerouted ?? {});
    $('s-rerouted').textContent = s.rerouted === null ? '-' : `${rerouted.reduce((a, [, n]) => a + n, 0)}`;
    $('s-rerouted').title = rerouted.map(([k, n]) => `${k} ${n}`).join(', ');
    const colors = palette();
    drawWorkers(s, dt, before, colors, windowStart(s.time));
    drawListeners(s);
    drawEvents();
    drawCharts(s.time, colors);
  }

  /** The chart colours of the scheme in use, from status.css. */
  function palette() {
    const css = getComputedStyle(document.documentElement);
    /** @param {string} name */
    const v = (name) => css.getPropertyValue(name).trim();
    return {
      fg: v('--fg'), muted: v('--muted'), grid: v('--grid'), line: v('--line'),
      series: v('--series').split(',').map((c) => c.trim()),
      /** @type {Record<string, string>} */
      mark: { reload: v('--info'), crash: v('--bad'), restart: v('--warn'), reroute: v('--purple') },
    };
  }
  /** @typedef {ReturnType<typeof palette>} Palette */

  // Where the charts' time axis begins: 5 minutes back, or the first reading
  // of a page opened since (at least 20 s shown), so a new page's lines fill
  // the width rather than a sliver at the right edge.
  /** @param {number} now */
  const windowStart = (now) => Math.min(now - 20000, Math.max(now - HISTORY_MS, history[0].t));
  /** @param {Palette} colors @param {number} id */
  const colorOf = (colors, id) => colors.series[(id - 1) % colors.series.length];

  /** @type {Map<number, { tr: HTMLTableRowElement, cells: HTMLElement[], state: HTMLElement, spark: HTMLCanvasElement }>} */
  const rows = new Map();

  /**
   * @param {Stats} s
   * @param {number} dt
   * @param {Map<number, Stats['workers'][number]>} before
   * @param {Palette} colors
   * @param {number} t0 where the sparklines begin
   */
  function drawWorkers(s, dt, before, colors, t0) {
    const tbody = /** @type {HTMLElement} */ (document.querySelector('#workers tbody'));
    const ids = new Set(s.workers.map((w) => w.id));
    for (const [id, row] of rows) {
      if (!ids.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    for (const w of s.workers) {
      let row = rows.get(w.id);
      if (row === undefined) {
        const tr = document.createElement('tr');
        const cells = [];
        for (let i = 0; i < 13; i++) cells.push(add(tr, 'td', undefined, i >= 3 && i !== 6 ? 'n' : ''));
        const spark = /** @type {HTMLCanvasElement} */ (add(cells[6], 'canvas', undefined, 'spark'));
        row = { tr, cells, spark, state: add(cells[2], 'span') };
        tr.dataset.id = `${w.id}`;
        rows.set(w.id, row);
      }
      tbody.appendChild(row.tr); // in /stats' order
      const b = before.get(w.id);
      const state = w.stalled ? 'stalled' : w.state;
      row.tr.className = w.stalled ? 'stalled' : w.state === 'draining' ? 'draining' : '';
      row.tr.dataset.pid = `${w.pid ?? ''}`;
      row.state.textContent = state;
      row.state.className = `badge ${state}`;
      const c = row.cells;
      c[0].textContent = `${w.id}`;
      c[0].style.borderLeft = `3px solid ${colorOf(colors, w.id)}`;
      c[1].textContent = `${w.pid ?? '-'}`;
      c[3].textContent = `${w.active ?? '-'}`;
      c[4].textContent = `${w.pending ?? '-'}`;
      c[5].textContent = num(history[history.length - 1].workers[w.id].acc);
      c[7].textContent = view.seconds(b && view.recentQuantile(0.5, w.handoff, b.handoff, s.handoffBounds));
      c[8].textContent = view.seconds(b && view.recentQuantile(0.99, w.handoff, b.handoff, s.handoffBounds));
      c[9].textContent = view.seconds(w.eventLoopLag);
      c[10].textContent = view.bytes(w.rss);
      c[11].textContent = b && w.cpu != null && b.cpu != null ? num(((w.cpu - b.cpu) / dt) * 100, 1) : '-';
      c[12].textContent = `${w.restarts}`;
      spark(row.spark, history.map((h) => [h.t, h.workers[w.id]?.acc ?? null]), t0, colorOf(colors, w.id));
    }
  }

  /** @param {Stats} s */
  function drawListeners(s) {
    const tbody = /** @type {HTMLElement} */ (document.querySelector('#listeners tbody'));
    tbody.replaceChildren();
    for (const l of s.listeners) {
      const tr = add(tbody, 'tr');
      add(tr, 'td', l.address);
      add(tr, 'td', l.policy);
      add(tr, 'td', l.placement);
      const q = add(tr, 'td');
      if (l.queue != null && l.queueLimit) {
        const bar = add(q, 'span', undefined, 'queue');
        const share = Math.min(1, l.queue / l.queueLimit);
        bar.classList.toggle('high', share >= 0.5);
        add(bar, 'span').style.width = `${share * 100}%`;
      }
      add(q, 'span', `${l.queue ?? '-'} / ${l.queueLimit ?? '-'}`);
      add(tr, 'td', `${l.accepted ?? '-'}`, 'n');
      add(tr, 'td', `${l.waiting}`, 'n');
      add(tr, 'td', `${l.stickyKeys}`, 'n');
      add(tr, 'td', `${l.workers.length}`, 'n');
    }
  }

  const EVENT_TEXT = { reload: 'reload', restart: 'restart', reroute: 'rerouted' };
  let shownEvents = 0;
  function drawEvents() {
    const list = $('events');
    if (events.length === shownEvents) return;
    shownEvents = events.length;
    list.replaceChildren();
    for (const e of [...events].reverse()) {
      const li = add(list, 'li');
      li.dataset.kind = e.kind;
      li.dataset.reason = e.reason;
      add(li, 'time', time(e.t));
      add(li, 'b', EVENT_TEXT[e.kind]);
      add(li, 'span', e.kind === 'reload' ? `rolling reload began${e.n > 1 ? ` ×${e.n}` : ''}`
        : `${e.reason}${e.kind === 'restart' ? ` ×${e.n}` : `: ${e.n} connection${e.n > 1 ? 's' : ''}`}`);
    }
  }

  // The marker of an event on the charts: its letter and colour key.
  /** @param {Event} e @returns {[string, string] | null} */
  function marker(e) {
    if (e.kind === 'reload') return ['R', 'reload'];
    if (e.kind === 'reroute') return ['↷', 'reroute'];
    // A reload's own restarts are its marker's.
    if (e.reason === 'reload') return null;
    return e.reason === 'crash' ? ['C', 'crash'] : [e.reason[0].toUpperCase(), 'restart'];
  }

  /**
   * @param {number} now
   * @param {Palette} colors
   */
  function drawCharts(now, colors) {
    const ids = [...new Set(history.flatMap((h) => Object.keys(h.workers).map(Number)))].sort((a, b) => a - b);
    /** @param {(h: Sample, id: number) => number | null} pick */
    const perWorker = (pick) => ids.map((id) => ({
      color: colorOf(colors, id),
      points: history.map((h) => /** @type {[number, number | null]} */ ([h.t, h.workers[id] ? pick(h, id) : null])),
    }));
    const t0 = windowStart(now);
    const marks = events.filter((e) => e.t >= t0).map((e) => ({ t: e.t, m: marker(e) })).filter((e) => e.m !== null);
    const frame = { t0, t1: now, marks, colors };
    chart($('c-rps'), [{ color: colors.series[0], fill: true, points: history.map((h) => [h.t, h.rps]) }], num, frame);
    chart($('c-p99'), [{ color: colors.series[1], fill: true, points: history.map((h) => [h.t, h.p99]) }], view.seconds, frame);
    chart($('c-lag'), perWorker((h, id) => h.workers[id].lag), view.seconds, frame);
    chart($('c-rss'), perWorker((h, id) => h.workers[id].rss), view.bytes, frame);
    const legend = $('legend');
    legend.replaceChildren();
    for (const id of ids) {
      const item = add(legend, 'span', undefined);
      add(item, 'span', undefined, 'swatch').style.background = colorOf(colors, id);
      item.append(`worker ${id}`);
    }
  }

  /** A canvas sized to its box, in device pixels; null while it has no box. @param {HTMLElement} el */
  function surface(el) {
    const canvas = /** @type {HTMLCanvasElement} */ (el);
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (w === 0 || h === 0) return null;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }

  // 1, 2 or 5 × 10^k, at least `v`: the top of a chart's scale (2 with
  // nothing to show, so that its middle label is a whole number).
  /** @param {number} v */
  function niceMax(v) {
    if (!(v > 0)) return 2;
    const k = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 5, 10].map((m) => m * k).find((m) => m >= v) ?? 10 * k;
  }

  /**
   * Lines through `points`, broken where a reading is missing.
   * @param {CanvasRenderingContext2D} ctx
   * @param {Array<[number, number | null]>} points
   * @param {(t: number) => number} x
   * @param {(v: number) => number} y
   * @param {number | null} base the y to close a filled area down to, or null for none
   */
  function trace(ctx, points, x, y, base) {
    /** @type {Array<Array<[number, number]>>} */
    const runs = [];
    let run = null;
    let lastT = -Infinity;
    for (const [t, v] of points) {
      if (v == null || !Number.isFinite(v) || t - lastT > GAP_MS) run = null;
      if (v != null && Number.isFinite(v)) {
        if (run === null) runs.push((run = []));
        run.push([x(t), y(v)]);
      }
      lastT = t;
    }
    for (const r of runs) {
      ctx.beginPath();
      r.forEach(([px, py], i) => (i === 0 ? ctx.moveTo(px, py) : ctx.lineTo(px, py)));
      ctx.stroke();
      if (base !== null && r.length > 1) {
        ctx.lineTo(r[r.length - 1][0], base);
        ctx.lineTo(r[0][0], base);
        ctx.closePath();
        ctx.globalAlpha = 0.15;
        ctx.fill();
        ctx.globalAlpha = 1;
      }
    }
  }

  /**
   * A time chart of the last 5 minutes: a scale from 0, minute ticks, the series, the events' markers.
   * @param {HTMLElement} el
   * @param {Array<{ color: string, fill?: boolean, points: Array<[number, number | null]> }>} series
   * @param {(v: number) => string} fmt
   * @param {{ t0: number, t1: number, marks: Array<{ t: number, m: [string, string] }>, colors: Palette }} frame
   */
  function chart(el, series, fmt, { t0, t1, marks, colors }) {
    const s = surface(el);
    if (s === null) return;
    const { ctx, w, h } = s;
    const left = 52;
    const top = 24;
    const bottom = h - 16;
    const yMax = niceMax(Math.max(0, ...series.flatMap((se) => se.points.map(([, v]) => v ?? 0))));
    /** @param {number} t */
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (w - left - 4);
    /** @param {number} v */
    const y = (v) => bottom - (v / yMax) * (bottom - top);
    ctx.font = '10px system-ui, sans-serif';
    ctx.lineWidth = 1;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    for (const v of [0, yMax / 2, yMax]) {
      ctx.strokeStyle = colors.grid;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y(v)) + 0.5);
      ctx.lineTo(w, Math.round(y(v)) + 0.5);
      ctx.stroke();
      ctx.fillStyle = colors.muted;
      ctx.fillText(fmt(v), left - 5, y(v));
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    // Ticks on round times, a label's width (70 px) apart at least.
    const room = Math.max(1, Math.floor((w - left) / 70));
    const step = [5, 10, 15, 30, 60, 120, 300].map((k) => k * 1000).find((k) => (t1 - t0) / k <= room) ?? 300000;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      ctx.fillText(step < 60000 ? time(t) : time(t).slice(0, 5), x(t), bottom + 4);
    }
    // Glyphs of events close in time stack, not overlap.
    /** @type {number[]} */
    const placed = [];
    for (const { t, m: [glyph, key] } of marks) {
      const row = placed.filter((px) => Math.abs(px - x(t)) < 9).length;
      placed.push(x(t));
      ctx.strokeStyle = colors.mark[key];
      ctx.fillStyle = colors.mark[key];
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(Math.round(x(t)) + 0.5, top);
      ctx.lineTo(Math.round(x(t)) + 0.5, bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.font = 'bold 10px system-ui, sans-serif';
      ctx.fillText(glyph, x(t), 1 + row * 11);
      ctx.font = '10px system-ui, sans-serif';
    }
    ctx.lineWidth = 1.5;
    ctx.lineJoin = 'round';
    for (const se of series) {
      ctx.strokeStyle = se.color;
      ctx.fillStyle = se.color;
      trace(ctx, se.points, x, y, se.fill ? bottom : null);
    }
  }

  /**
   * A worker's accepted/s over the charts' time, on its own scale.
   * @param {HTMLCanvasElement} el
   * @param {Array<[number, number | null]>} points
   * @param {number} t0
   * @param {string} color
   */
  function spark(el, points, t0, color) {
    const s = surface(el);
    if (s === null || points.length === 0) return;
    const { ctx, w, h } = s;
    const t1 = points[points.length - 1][0];
    const max = niceMax(Math.max(0, ...points.map(([, v]) => v ?? 0)));
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 1;
    trace(ctx, points, (t) => ((t - t0) / (t1 - t0)) * w, (v) => h - 1 - (v / max) * (h - 2), h);
  }

  poll();
}
