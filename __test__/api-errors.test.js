'use strict';
// Errors of the cluster API, rs-cluster against node:cluster: same class,
// code, message and `Name [CODE]` stack header, raised at the same call
// (setupPrimary or fork), with the same worker ids used up
// (fixture: lifecycle-errors.js).
const test = require('node:test');
const assert = require('node:assert');
const { runBoth } = require('./fixtures/lifecycle-compare');

async function compare(env) {
  const res = await runBoth('lifecycle-errors.js', env);
  for (const impl of ['rs', 'node']) {
    assert.deepStrictEqual(res[impl].exit, { code: 0, signal: null },
                           `${impl}: ${JSON.stringify(res[impl].events)}\n${res[impl].stderr}`);
  }
  assert.deepStrictEqual(res.rs.events, res.node.events);
  assert.strictEqual(res.rs.stderr, res.node.stderr);
  return res.rs.events;
}

test('bad settings and inspectPort values fail like node:cluster', { timeout: 20000 }, async () => {
  const events = await compare({ GROUP: 'sync' });
  const cases = Object.fromEntries(events.filter((e) => e.event === 'case').map((e) => [e.case, e]));

  const badPort = (received) => ({
    where: 'fork',
    ctor: 'RangeError',
    code: 'ERR_SOCKET_BAD_PORT',
    message: `Port should be >= 0 and < 65536. Received ${received}.`,
  });
  const pick = (c) => ({ where: c.where, ctor: c.ctor, code: c.code, message: c.message });
  // inspectPort null is refused even without an inspector flag.
  assert.deepStrictEqual(pick(cases['inspectPort null']), badPort('null'));
  assert.strictEqual(cases['inspectPort null'].stackHead,
                     'RangeError [ERR_SOCKET_BAD_PORT]: Port should be >= 0 and < 65536. Received null.');
  assert.deepStrictEqual(pick(cases['inspectPort string']), badPort("type string ('abc')"));
  assert.deepStrictEqual(pick(cases['inspectPort too big']), badPort('type number (65536)'));
  assert.deepStrictEqual(pick(cases['inspectPort fn bad']), badPort("type string ('x')"));
  assert.strictEqual(cases['inspectPort fn throws'].ctor, 'SyntaxError');
  assert.strictEqual(cases['inspectPort numeric string'].result, 'ok');
  assert.strictEqual(cases['inspectPort bad, no inspector'].result, 'ok');

  // Type errors from the settings themselves, raised where node:cluster raises them.
  assert.deepStrictEqual(pick(cases['execArgv null']), {
    where: 'setupPrimary', ctor: 'TypeError', code: '<none>', message: 'Array.prototype.some called on null or undefined',
  });
  assert.deepStrictEqual(pick(cases['execArgv number']), {
    where: 'fork', ctor: 'TypeError', code: '<none>', message: 'cluster.settings.execArgv is not iterable',
  });
  assert.strictEqual(cases['execArgv string'].where, 'fork');
  assert.strictEqual(cases['execArgv non-strings'].result, 'ok');

  // Errors child_process raises for the options cluster passes on.
  assert.deepStrictEqual([cases['cwd number'].ctor, cases['cwd number'].code], ['TypeError', 'ERR_INVALID_ARG_TYPE']);
  assert.deepStrictEqual([cases['args string'].ctor, cases['args string'].code], ['TypeError', 'ERR_INVALID_ARG_TYPE']);
  assert.deepStrictEqual([cases['exec number'].ctor, cases['exec number'].code], ['TypeError', 'ERR_INVALID_ARG_TYPE']);
  assert.deepStrictEqual(pick(cases['stdio bogus']), {
    where: 'fork', ctor: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: "The argument 'stdio' is invalid. Received 'bogus'",
  });
  assert.strictEqual(cases['stdio without ipc'].code, 'ERR_CHILD_PROCESS_IPC_REQUIRED');
  assert.strictEqual(cases['serialization bogus'].code, 'ERR_INVALID_ARG_VALUE');
  assert.strictEqual(cases['uid string'].code, 'ERR_INVALID_ARG_TYPE');
  assert.strictEqual(cases['gid object'].code, 'ERR_INVALID_ARG_TYPE');
  assert.strictEqual(cases['windowsHide string'].code, 'ERR_INVALID_ARG_TYPE');

  // A fork that throws leaves no worker behind but uses up its id.
  assert.deepStrictEqual(cases['cwd number'].workers, cases['exec number'].workers);
  const last = events.find((e) => e.event === 'last');
  assert.strictEqual(last.id, events.filter((e) => e.event === 'case' && e.where !== 'setupPrimary').length + 1);
});

for (const [name, check] of [
  // node:cluster reports such a worker online before its script fails to load.
  ['missingExec', (events) => {
    assert.ok(events.some((e) => e.event === 'cluster:online'));
    assert.deepStrictEqual(events.find((e) => e.event === 'cluster:exit').args, [1, '<nullish>']);
  }],
  ['missingCwd', (events) => {
    const err = events.find((e) => e.event === 'worker:error');
    assert.strictEqual(err.args[0].code, 'ENOENT');
    assert.ok(!events.some((e) => e.event === 'cluster:online'));
  }],
  ['throwing', (events) => {
    assert.deepStrictEqual(events.find((e) => e.event === 'cluster:exit').args, [1, '<nullish>']);
  }],
]) {
  test(`a worker that cannot start: ${name}`, { timeout: 20000 }, async () => {
    check(await compare({ GROUP: 'async', CASE: name }));
  });
}

test('in a worker: no fork/setupPrimary/disconnect; send once disconnected', { timeout: 20000 }, async () => {
  const events = await compare({ GROUP: 'worker' });
  const { res } = events.find((e) => e.event === 'from-worker');
  assert.deepStrictEqual(res.fork, {
    ctor: 'TypeError',
    name: 'TypeError',
    code: '<none>',
    message: 'cluster.fork is not a function',
    stackHead: 'TypeError: cluster.fork is not a function',
  });
  assert.strictEqual(res.setupPrimary.message, 'cluster.setupPrimary is not a function');
  assert.strictEqual(res.disconnect.message, 'cluster.disconnect is not a function');
  const { late } = events.find((e) => e.event === 'worker-late-send');
  assert.strictEqual(late.sendRet, false);
  assert.strictEqual(late.sendCb.code, 'ERR_IPC_CHANNEL_CLOSED');
  assert.strictEqual(late.errorEvent.stackHead, 'Error [ERR_IPC_CHANNEL_CLOSED]: Channel closed');
});

test('an invalid schedulingPolicy fails the first setupPrimary as an internal assertion', { timeout: 20000 }, async () => {
  const events = await compare({ GROUP: 'policy', POLICY: '"rr"' });
  const [first, again, fork] = events.slice(1);
  assert.strictEqual(first.code, 'ERR_INTERNAL_ASSERTION');
  assert.strictEqual(first.stackHead, 'Error [ERR_INTERNAL_ASSERTION]: Bad cluster.schedulingPolicy: rr');
  assert.ok(first.message.startsWith('Bad cluster.schedulingPolicy: rr\n'));
  assert.strictEqual(again.result, 'ok');
  assert.strictEqual(fork.result, 'ok');
});

test('fork() with no fd left returns a Worker whose process emits EMFILE, as node:cluster', { timeout: 20000 }, async () => {
  const res = await runBoth('faults-fork-fds.js');
  for (const impl of ['rs', 'node']) {
    assert.deepStrictEqual(res[impl].exit, { code: 0, signal: null }, `${impl}: ${res[impl].stderr}`);
  }
  assert.deepStrictEqual(res.rs.events, res.node.events);
  const error = res.rs.events.find((e) => e.event === 'worker:error');
  assert.strictEqual(error.code, 'EMFILE');
  assert.strictEqual(error.errno, -require('node:os').constants.errno.EMFILE);
  assert.match(error.syscall, /^spawn /);
  assert.ok(!res.rs.events.some((e) => e.event === 'thrown'), 'fork() does not throw');
});
