// Types for rs-cluster: the same API as node:cluster, so they are taken from
// @types/node (a peer type dependency) rather than copied.
//
// The package is CommonJS (`module.exports = cluster`; js/index.mjs re-exports
// that same object as `default` plus its properties as named exports), so this
// file uses `export =`: `import cluster = require('rs-cluster')`,
// `const cluster = require('rs-cluster')` (checkJs) and, under node16/nodenext,
// `import cluster from 'rs-cluster'` all get the cluster object, and
// `import { fork, isPrimary } from 'rs-cluster'` get its properties.
// (Re-exporting the 'node:cluster' module itself would type the ESM default
// import as that module's namespace, with the object under `.default`.)

/// <reference types="node" />

import type * as nodeCluster from "node:cluster";

declare const cluster: nodeCluster.Cluster & {
    /** The Worker class, as `cluster.Worker` / `import { Worker } from 'rs-cluster'`. */
    readonly Worker: typeof nodeCluster.Worker;
};

// Type-only namespace (it merges with the const above): `cluster.Worker` etc.
// as types, and `import type { Worker, ClusterSettings } from 'rs-cluster'`.
declare namespace cluster {
    type Cluster = nodeCluster.Cluster;
    type Worker = nodeCluster.Worker;
    type ClusterSettings = nodeCluster.ClusterSettings;
    type Address = nodeCluster.Address;
}

export = cluster;
