'use strict';
// `rs-cluster top <[host:]port>`: a live view of a running cluster's
// /stats (the metrics endpoint), redrawn in place every second on the
// terminal's alternate screen (with the token in RS_CLUSTER_METRICS_TOKEN
// if the endpoint asks one). Rates (accepted/s, CPU%) and the hand-off
// p99 are over the last refresh. q or Ctrl-C quits and leaves the terminal
// as it was. Without a terminal it prints one frame and exits.

const http = require('node:http');
const { parseAddress } = require('./settings');
const { recentQuantile, seconds, bytes, clock } = require('./status/view');
const { formatAddress } = require('./address');

const USAGE = 'usage: rs-cluster top <[host:]port>   live view of a cluster\'s metrics endpoint (q quits)';
const REFRESH_MS = 1000;
const TIMEOUT_MS = 2000;

const ESC = '\x1b[';
const ENTER = `${ESC}?1049h${ESC}?25l`; // alternate screen, cursor hidden
const LEAVE = `${ESC}?25h${ESC}?1049l`;

function fetchStats({ host, port }) {
  return new Promise((resolve, reject) => {
    // An endpoint with a token asks for it (js/metrics-server.js).
    const token = process.env.RS_CLUSTER_METRICS_TOKEN;
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const req = http.get({ host, port, path: '/stats', headers, agent: false, timeout: TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        try {
          if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${body.trim()}`);
          resolve(JSON.parse(body));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('no answer within 2 s'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

const right = (value, width) => `${value}`.padStart(width);
const left = (value, width) => `${value}`.padEnd(width);

// Per-second rate of a counter between two snapshots ('-' without one);
// over dt / 100, a percentage (CPU seconds per second, as CPU%).
function rate(now, before, dt, digits = 0) {
  return before == null || now == null || dt <= 0 ? '-' : ((now - before) / dt).toFixed(digits);
}

// The screen for `stats`, with rates against `prev`: its lines (the last
// one `status`, at the bottom of `rows`) and which of them are headings.
/**
 * @param {import('../index').Stats} stats /stats, typed as cluster.stats()
 * @param {import('../index').Stats | null} prev
 * @param {string} target
 * @param {number} rows
 * @param {string} status
 */
function frame(stats, prev, target, rows, status) {
  const dt = prev ? (stats.time - prev.time) / 1000 : 0;
  const before = new Map(prev ? prev.workers.map((w) => [w.id, w]) : []);
  const t = stats.totals;
  const lines = [
    `rs-cluster top  ${target}  primary ${stats.primary.pid} up ${clock(stats.primary.uptime)}` +
      `  ${stats.routing.policy}${stats.routing.sticky ? `:${stats.routing.sticky}` : ''}` +
      `  ${new Date(stats.time).toTimeString().slice(0, 8)}`,
    `workers ${t.workers}  active ${t.active ?? '-'}  accepted ${t.accepted ?? '-'} (${rate(t.accepted, prev?.totals.accepted, dt)}/s)` +
      `  hand-off p99 ${seconds(recentQuantile(0.99, t.handoff, prev?.totals.handoff, stats.handoffBounds))}`,
    `restarts: crash ${stats.restarts.crash} hang ${stats.restarts.hang} memory ${stats.restarts.memory}` +
      ` reload ${stats.restarts.reload}  reloads ${stats.reloads}  rerouted ${stats.rerouted === null ? '-' : Object.values(stats.rerouted).reduce((a, b) => a + b, 0)}`,
    '',
    `${right('ID', 4)} ${right('PID', 7)} ${left('STATE', 12)} ${right('ACTIVE', 6)} ${right('ACC/S', 6)}` +
      ` ${right('P99 HOFF', 9)} ${right('LOOP LAG', 8)} ${right('RSS', 6)} ${right('CPU%', 5)} ${right('RESTART', 7)}`,
  ];
  const headings = new Set([lines.length - 1]);
  // Room for the workers beside the listeners' lines and the status line.
  const room = Math.max(2, rows - lines.length - stats.listeners.length - 4);
  const shown = stats.workers.length > room ? stats.workers.slice(0, room - 1) : stats.workers;
  for (const w of shown) {
    const b = before.get(w.id);
    const state = w.stalled ? 'stalled' : w.state;
    lines.push(`${right(w.id, 4)} ${right(w.pid ?? '-', 7)} ${left(state, 12)} ${right(w.active ?? '-', 6)}` +
      ` ${right(rate(w.accepted, b?.accepted, dt), 6)} ${right(seconds(recentQuantile(0.99, w.handoff, b?.handoff, stats.handoffBounds)), 9)}` +
      ` ${right(seconds(w.eventLoopLag), 8)} ${right(bytes(w.rss), 6)} ${right(rate(w.cpu, b?.cpu, dt / 100, 1), 5)}` +
      ` ${right(w.restarts, 7)}`);
  }
  if (shown.length < stats.workers.length) lines.push(`  ... ${stats.workers.length - shown.length} more workers`);
  lines.push('', `${left('LISTENER', 40)} ${left('POLICY', 6)} ${right('QUEUE', 6)} ${right('LIMIT', 6)} ${right('ACCEPTED', 10)}`);
  headings.add(lines.length - 1);
  for (const l of stats.listeners) {
    lines.push(`${left(l.address, 40)} ${left(l.policy, 6)} ${right(l.queue ?? '-', 6)} ${right(l.queueLimit ?? '-', 6)}` +
      ` ${right(l.accepted ?? '-', 10)}`);
  }
  while (Number.isFinite(rows) && lines.length < rows - 1) lines.push('');
  lines.push(status);
  return { lines, headings };
}

// Redraws in place until q or Ctrl-C; resolves with the exit code.
function live(target, address, first) {
  const out = process.stdout;
  const input = process.stdin;
  let current = first;
  let prev = null;
  let status = 'q quits';
  let done = false;
  return new Promise((resolve) => {
    const draw = () => {
      const { lines, headings } = frame(current, prev, target, out.rows || 24, status);
      // Home; each line cut to the width (headings in reverse video) and
      // cleared to its end; then the rest of the screen cleared.
      const width = out.columns || 80;
      const shown = lines.map((l, i) => (headings.has(i) ? `${ESC}7m${l.slice(0, width)}${ESC}0m` : l.slice(0, width)));
      out.write(`${ESC}H${shown.map((l) => `${l}${ESC}K`).join('\r\n')}${ESC}J`);
    };
    const refresh = () => {
      fetchStats(address).then((stats) => {
        prev = current;
        current = stats;
        status = 'q quits';
      }, (err) => {
        status = `no answer from ${target}: ${err.code || err.message} (since ${new Date().toTimeString().slice(0, 8)})`;
      }).then(() => { if (!done) draw(); });
    };
    const quit = () => {
      if (done) return;
      done = true;
      clearInterval(timer);
      input.off('data', onKey);
      if (input.isTTY) input.setRawMode(false);
      input.pause();
      out.off('resize', draw);
      process.off('SIGINT', quit);
      process.off('SIGTERM', quit);
      out.write(LEAVE);
      resolve(0);
    };
    // Raw mode turns Ctrl-C into a byte; SIGINT still comes by kill.
    const onKey = (data) => {
      if (data.includes('q') || data.includes('Q') || data.includes('\x03')) quit();
    };
    out.write(ENTER);
    if (input.isTTY) input.setRawMode(true);
    input.setEncoding('utf8');
    input.on('data', onKey);
    input.resume();
    out.on('resize', draw);
    process.on('SIGINT', quit);
    process.on('SIGTERM', quit);
    const timer = setInterval(refresh, REFRESH_MS);
    draw();
  });
}

async function main(argv) {
  if (argv.length === 1 && (argv[0] === '-h' || argv[0] === '--help')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const address = argv.length === 1 ? parseAddress(argv[0]) : null;
  if (address === null) {
    process.stderr.write(`rs-cluster top: ${argv.length === 1 ? `not a [host:]port: '${argv[0]}'` : 'one [host:]port expected'}\n${USAGE}\n`);
    return 2;
  }
  const target = formatAddress({ address: address.host, port: address.port });
  let stats;
  try {
    stats = await fetchStats(address);
  } catch (err) {
    process.stderr.write(`rs-cluster top: nothing answers at ${target} (${err.code || err.message})\n`);
    return 1;
  }
  if (!process.stdout.isTTY) {
    // One frame, every worker, no escapes: for a pipe or a log.
    const { lines } = frame(stats, null, target, Infinity, '');
    process.stdout.write(`${lines.slice(0, -1).join('\n')}\n`);
    return 0;
  }
  return live(target, address, stats);
}

module.exports = { main };

if (require.main === module) main(process.argv.slice(2)).then((code) => process.exit(code));
