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

    /** `cluster.reload(options)`. */
    interface ReloadOptions {
        /** How long an old worker may finish its work before it is killed (default: settings.drainTimeout, else 30000). */
        drainTimeout?: number | undefined;
        /** How long a replacement may take to become ready before the reload fails (default 30000). */
        readyTimeout?: number | undefined;
    }

    /** The second argument of the `'restart'` event. */
    interface RestartInfo {
        /**
         * `'crash'`: exited unexpectedly (respawn); `'reload'`: cluster.reload(); `'memory'`: over maxMemory;
         * `'hang'`: its event loop was stuck for hangTimeout.
         */
        reason: "crash" | "reload" | "memory" | "hang";
        /** The worker this one replaces. */
        previous: nodeCluster.Worker;
        /** reason 'crash': how the previous worker exited, and the backoff waited before this fork (ms). */
        exitCode?: number | null;
        signalCode?: NodeJS.Signals | null;
        delay?: number;
        /** reason 'hang': how long its event loop had been stuck (ms). */
        lag?: number;
        /** reason 'memory': the previous worker's resident set size (bytes) when it was replaced. */
        rss?: number;
    }
}

// rs-cluster's additions, on node:cluster's own types (so they also type
// `require('node:cluster')` under rs-cluster/register).
declare module "cluster" {
    interface ClusterSettings {
        /** Replace workers that exit unexpectedly, with exponential backoff (RS_CLUSTER_RESPAWN=1). */
        respawn?: boolean | undefined;
        /** ms a disconnected worker may drain before it is killed (RS_CLUSTER_DRAIN_TIMEOUT). */
        drainTimeout?: number | undefined;
        /** ms of a stuck event loop before a worker is killed and replaced; 0 = off (RS_CLUSTER_HANG_TIMEOUT). */
        hangTimeout?: number | undefined;
        /** MB of resident memory above which a worker is replaced gracefully; 0 = off (RS_CLUSTER_MAX_MEMORY). */
        maxMemory?: number | undefined;
        /** A new worker is ready when it calls `process.send('ready')`, not when it listens (RS_CLUSTER_WAIT_READY=1). */
        waitReady?: boolean | undefined;
        /**
         * With `schedulingPolicy = SCHED_STICKY`: what keeps a client on one worker (RS_CLUSTER_STICKY_KEY).
         * `'ip'` (default), or read from the first request's head: `'header:NAME'`, `'cookie:NAME'`, `'query:NAME'`.
         */
        sticky?: "ip" | `header:${string}` | `cookie:${string}` | `query:${string}` | undefined;
    }
    interface Cluster {
        /** Each new connection to the worker with the fewest live connections (NODE_CLUSTER_SCHED_POLICY=least). */
        readonly SCHED_LEAST: number;
        /** A client's connections to one worker, by `settings.sticky` (NODE_CLUSTER_SCHED_POLICY=sticky). */
        readonly SCHED_STICKY: number;
        /**
         * Rolling replacement of every worker, one at a time: its successor is forked and becomes ready,
         * then the old one stops getting connections, drains and exits. Rejects with
         * `code: 'ERR_RS_CLUSTER_RELOAD'` (the old workers keep serving) if a successor never becomes ready.
         */
        reload(options?: cluster.ReloadOptions): Promise<void>;
        addListener(event: "restart", listener: (worker: Worker, info: cluster.RestartInfo) => void): this;
        emit(event: "restart", worker: Worker, info: cluster.RestartInfo): boolean;
        on(event: "restart", listener: (worker: Worker, info: cluster.RestartInfo) => void): this;
        once(event: "restart", listener: (worker: Worker, info: cluster.RestartInfo) => void): this;
        prependListener(event: "restart", listener: (worker: Worker, info: cluster.RestartInfo) => void): this;
        prependOnceListener(event: "restart", listener: (worker: Worker, info: cluster.RestartInfo) => void): this;
    }
}

export = cluster;
