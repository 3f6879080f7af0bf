'use strict';
// rs-cluster's lifecycle messages (online, listening, disconnect,
// exitedAfterDisconnect) ride Node's IPC channel like node:cluster's, so they
// keep their order relative to user messages. A `cmd` starting with `NODE_`
// makes Node deliver them as 'internalMessage', never as a user 'message'.
// Server queries and connections use the private control channel instead.

const CMD = 'NODE_RS_CLUSTER';
function noop() {}
let seq = 0;
const callbacks = new Map();

function send(proc, message, cb) {
  if (!proc.connected) return false;
  const msg = { cmd: CMD, ...message };
  if (typeof cb === 'function') {
    msg.seq = ++seq;
    callbacks.set(msg.seq, cb);
  }
  // Errors (the channel closing underneath) surface through 'disconnect'.
  return proc.send(msg, undefined, undefined, noop);
}

// Wraps a handler for one process's internal messages: answers to our own
// requests run their callback, everything else goes to `onMessage(worker, msg)`.
function onInternal(worker, onMessage) {
  return (message, handle) => {
    if (message === null || typeof message !== 'object' || message.cmd !== CMD) return;
    if (message.ack !== undefined && callbacks.has(message.ack)) {
      const cb = callbacks.get(message.ack);
      callbacks.delete(message.ack);
      cb(message, handle);
      return;
    }
    onMessage(worker, message, handle);
  };
}

module.exports = { send, onInternal };
