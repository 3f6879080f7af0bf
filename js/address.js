'use strict';
// How rs-cluster writes an address, everywhere it shows one: `host:port`,
// `[v6]:port`, or a unix socket's path. The Rust primary writes listeners'
// addresses in stats the same way (crates/core/src/primary/handles.rs).

// `a`: a 'listening' address ({ address, port, addressType }, -1 for a
// pipe), `{ address: host, port }`, or a pipe's path as a string. A null
// address is every interface: '*'.
function formatAddress(a) {
  if (typeof a === 'string') return a;
  if (a.addressType === -1) return a.address;
  const host = a.address == null ? '*' : a.address.includes(':') ? `[${a.address}]` : a.address;
  return `${host}:${a.port}`;
}

module.exports = { formatAddress };
