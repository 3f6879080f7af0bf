'use strict';
// The Worker class both sides share. Its role-specific methods
// (disconnect, destroy) are added by primary.js and child.js, as in Node.

const EventEmitter = require('node:events');

// For the type check: a Worker is an EventEmitter (set up by hand below, as
// Node does, so Worker stays callable without `new`) with the methods each
// side adds.
/**
 * @typedef {Worker & EventEmitter & { disconnect(): any, destroy(signo?: string): void }} WorkerObject
 */

/**
 * @constructor
 * @this {WorkerObject}
 */
function Worker(options) {
  if (!(this instanceof Worker)) return new Worker(options);
  EventEmitter.call(this);
  if (options === null || typeof options !== 'object') options = {};
  this.exitedAfterDisconnect = undefined;
  this.state = options.state || 'none';
  this.id = options.id | 0;
  if (options.process) {
    this.process = options.process;
    this.process.on('error', (code, signal) => this.emit('error', code, signal));
    this.process.on('message', (message, handle) => this.emit('message', message, handle));
  }
}

Object.setPrototypeOf(Worker.prototype, EventEmitter.prototype);
Object.setPrototypeOf(Worker, EventEmitter);

/** @this {WorkerObject} */
Worker.prototype.kill = function kill(...args) {
  return this.destroy(...args);
};

Worker.prototype.send = function send(...args) {
  return this.process.send(...args);
};

Worker.prototype.isDead = function isDead() {
  return this.process.exitCode != null || this.process.signalCode != null;
};

Worker.prototype.isConnected = function isConnected() {
  return this.process.connected;
};

module.exports = /** @type {{ new (options?: object): WorkerObject, (options?: object): WorkerObject,
  prototype: WorkerObject }} */ (Worker);
