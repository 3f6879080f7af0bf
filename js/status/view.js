'use strict';
// What `rs-cluster top` (js/top.js) and the status page (js/status/) both
// make of /stats: quantiles of the hand-off histogram, over all time or
// since an earlier snapshot, and the short forms of times and sizes. One
// file for both: Node requires it, the page loads it as a plain script
// (served by js/metrics-server.js), where it sets `rsClusterView`.

const NS = 1e9;

/**
 * The value below which a fraction `q` of the observations fall, assuming
 * they spread evenly within their bucket (as Prometheus' histogram_quantile);
 * null with no observations. `counts` are per bucket, the last one +Inf.
 * @param {number} q
 * @param {number[]} bounds
 * @param {number[]} counts
 * @param {number} total
 * @returns {number | null}
 */
function quantile(q, bounds, counts, total) {
  if (total === 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    if (below + counts[i] >= rank && counts[i] > 0) {
      if (i >= bounds.length) return bounds[bounds.length - 1] ?? null;
      const lower = i === 0 ? 0 : bounds[i - 1];
      // To the nanosecond, the histogram's own resolution.
      return Math.round((lower + (bounds[i] - lower) * ((rank - below) / counts[i])) * NS) / NS;
    }
    below += counts[i];
  }
  return bounds[bounds.length - 1] ?? null;
}

/**
 * Quantile `q` of the hand-offs since `before` (both cumulative, as in
 * /stats), else over all time; null with none between.
 * @param {number} q
 * @param {{ count: number, buckets: number[], p50: number | null, p99: number | null } | null} h
 * @param {{ count: number, buckets: number[] } | null | undefined} before
 * @param {number[]} bounds
 */
function recentQuantile(q, h, before, bounds) {
  // None without the native primary.
  if (h === null) return null;
  if (before == null) return q === 0.5 ? h.p50 : h.p99;
  const counts = h.buckets.map((c, i) => c - (before.buckets[i] ?? 0) - (h.buckets[i - 1] ?? 0) + (before.buckets[i - 1] ?? 0));
  return quantile(q, bounds, counts, h.count - before.count);
}

/** @param {number | null | undefined} s seconds */
function seconds(s) {
  if (s == null) return '-';
  if (s < 0.001) return `${Math.round(s * 1e6)}us`;
  if (s < 1) return `${(s * 1e3).toFixed(1)}ms`;
  return `${s.toFixed(2)}s`;
}

/** @param {number | null | undefined} b bytes */
function bytes(b) {
  if (b == null) return '-';
  return b >= 10 * 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)}G` : `${(b / 2 ** 20).toFixed(1)}M`;
}

/** @param {number} s seconds, as h:mm:ss */
function clock(s) {
  const t = Math.floor(s);
  const mm = String(Math.floor(t / 60) % 60).padStart(2, '0');
  return `${Math.floor(t / 3600)}:${mm}:${String(t % 60).padStart(2, '0')}`;
}

const view = { quantile, recentQuantile, seconds, bytes, clock };
if (typeof module === 'object') module.exports = view;
else /** @type {any} */ (globalThis).rsClusterView = view;
