'use strict';
// How a process learns it is an rs-cluster worker. Never NODE_UNIQUE_ID,
// which would switch on Node's own cluster worker at bootstrap.
module.exports = {
  WORKER_ENV: 'RS_CLUSTER_WORKER_ID',
  // The stdio index of the worker's end of the control channel.
  CHANNEL_ENV: 'RS_CLUSTER_CHANNEL_FD',
  // The worker's own NODE_OPTIONS, saved while ours preloads rs-cluster.
  PRELOAD_ENV: 'RS_CLUSTER_NODE_OPTIONS',
  // The addon file the primary loaded, so workers skip the platform lookup.
  ADDON_ENV: 'RS_CLUSTER_ADDON',
  // Read by the primary: the round-robin window (connections a worker may
  // leave unread in its queue), 1 to 64.
  WINDOW_ENV: 'RS_CLUSTER_WINDOW',
  // '0' (or 'false'): run as node:cluster even where the addon loads.
  NATIVE_ENV: 'RS_CLUSTER_NATIVE',
};
