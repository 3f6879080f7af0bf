'use strict';
// Preloaded (`node -r`) into every process of the app under test: the
// primary and, through the inherited execArgv, each worker; or the single
// process of the baseline. The app itself stays untouched. It reports on
// stdout as `@@bench {json}` lines, each written with one write(2) so lines
// from several processes sharing the pipe never interleave:
//
//   primary: `fork` and `listening` per worker, then `ready` once every
//            worker listens (the end of the startup measurement);
//   worker/single: `proc` at start; `count` (requests and connections seen
//            so far, exact, counted on Node's own diagnostics channels
//            `http.server.request.start` and `net.server.socket`) on
//            SIGUSR2; on SIGHUP it blocks its event loop for BENCH_STALL_MS
//            and then reports `stalled`.
//
// For rs-cluster the bench preloads js/register.js first, so
// `require('node:cluster')` below is rs-cluster, as it is for the app.

const fs = require('node:fs');

const PREFIX = '@@bench ';
const role = process.env.BENCH_ROLE || 'cluster';

function emit(ev) {
  const line = `${PREFIX}${JSON.stringify({ ...ev, pid: process.pid, t: Date.now() })}\n`;
  try {
    fs.writeSync(1, line);
  } catch {
    // The bench has gone; nothing to report to.
  }
}

function serveSide(id) {
  const dc = require('node:diagnostics_channel');
  let requests = 0;
  let connections = 0;
  dc.subscribe('http.server.request.start', () => {
    requests++;
  });
  dc.subscribe('net.server.socket', () => {
    connections++;
  });
  process.on('SIGUSR2', () => emit({ ev: 'count', id, n: requests, conns: connections }));
  const stallMs = +process.env.BENCH_STALL_MS || 2000;
  process.on('SIGHUP', () => {
    const start = Date.now();
    emit({ ev: 'stalling', id, ms: stallMs });
    while (Date.now() - start < stallMs) {
      // Busy: nothing else runs on this event loop meanwhile.
    }
    emit({ ev: 'stalled', id, ms: Date.now() - start });
  });
  emit({ ev: 'proc', id, role: id === 0 ? 'single' : 'worker' });
}

require('./lib/orphan').exitWithBench(() => process.kill(process.pid, 'SIGKILL'));

if (role === 'single') {
  serveSide(0);
  // No cluster to announce `listening`: watch the server itself.
  const net = require('node:net');
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function listenAndReport(...args) {
    this.once('listening', () => emit({ ev: 'ready', pids: [process.pid], workers: [] }));
    return listen.apply(this, args);
  };
} else {
  const cluster = require('node:cluster');
  if (cluster.isPrimary) {
    const want = +process.env.WORKERS || require('node:os').availableParallelism();
    const listening = new Set();
    // Which implementation the app really got: rs-cluster keeps its cluster
    // object on `process` under this symbol.
    const impl = process[Symbol.for('rs-cluster')] === cluster ? 'rs' : 'node';
    emit({ ev: 'proc', id: -1, role: 'primary', impl, policy: cluster.schedulingPolicy === cluster.SCHED_NONE ? 'none' : 'rr' });
    cluster.on('fork', (w) => emit({ ev: 'fork', id: w.id, child: w.process.pid }));
    cluster.on('listening', (w, address) => {
      emit({ ev: 'listening', id: w.id, child: w.process.pid, port: address.port });
      if (listening.has(w.id)) return;
      listening.add(w.id);
      if (listening.size === want) {
        const workers = Object.values(cluster.workers).map((x) => ({ id: x.id, pid: x.process.pid }));
        emit({ ev: 'ready', workers, pids: [process.pid, ...workers.map((x) => x.pid)] });
      }
    });
    cluster.on('exit', (w, code, signal) => emit({ ev: 'exit', id: w.id, child: w.process.pid, code, signal }));
  } else {
    serveSide(cluster.worker.id);
  }
}
