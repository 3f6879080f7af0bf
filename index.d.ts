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

    // The stats types below are the schema of cluster.stats(): js/stats.js,
    // js/prometheus.js and js/top.js are type-checked against them, and
    // __test__/metrics-schema.test.js holds a real snapshot to them key for key.
    // The connection counters, hand-off times and lags come from the native
    // primary: they are null where `cluster.native` is false.

    /** A hand-off latency histogram (accept in the primary to `connection` in the worker), in seconds. */
    interface HandoffStats {
        /** Quantiles estimated from the buckets (linear within a bucket); null before any connection. */
        p50: number | null;
        p90: number | null;
        p99: number | null;
        count: number;
        sum: number;
        /** Cumulative counts, one per `Stats.handoffBounds` entry, then +Inf. */
        buckets: number[];
    }

    /** One worker in `cluster.stats()`. */
    interface WorkerStats {
        id: number;
        /** null once its process has exited. */
        pid: number | null;
        /** node:cluster's `worker.state`, or 'draining' once told to disconnect while it still serves. */
        state: "none" | "online" | "listening" | "draining" | "disconnected" | "dead";
        /** Its event loop stood still with connections waiting: it gets none until it turns. */
        stalled: boolean | null;
        /** Connections it has taken. */
        accepted: number | null;
        /** Open in its servers. */
        active: number | null;
        /** Handed to it, not taken yet. */
        pending: number | null;
        /** Taken back from it unread (it exited, drained, stalled or ran short of fds) and served elsewhere. */
        rerouted: number | null;
        /** Given back by it (its server closed, at maxConnections, or short of fds) and served elsewhere. */
        refused: number | null;
        handoff: HandoffStats | null;
        /** Seconds its event loop is behind (grows while it is stuck). */
        eventLoopLag: number | null;
        /** Resident set size, bytes (null if unreadable). */
        rss: number | null;
        /** User + system CPU seconds (null if unreadable). */
        cpu: number | null;
        /** Replacements behind this worker: its predecessor's restarts plus one. */
        restarts: number;
    }

    /** One listener (a server handle the primary accepts on, or one the workers share) in `cluster.stats()`. */
    interface ListenerStats {
        id: number;
        /** `host:port`, or the unix socket's path. */
        address: string;
        /** The listener's scheduling policy: "none" where the workers accept (SCHED_NONE, and UDP). */
        policy: "none" | "rr" | "least" | "sticky" | "random";
        /**
         * Who places its connections: `'primary'` (it accepts and hands each over), `'kernel'` (a steered group,
         * one socket per worker) or `'shared'` (the workers accept on one socket).
         */
        placement: "primary" | "kernel" | "shared";
        workers: number[];
        /** Accepted by the primary (null where the workers accept). */
        accepted: number | null;
        /** The kernel's accept queue: waiting connections and its limit (TCP on Linux only). */
        queue: number | null;
        queueLimit: number | null;
        /** Waiting in the primary: for a sticky worker's room, or for their first request's head. */
        waiting: number;
        /** Sticky keys the primary remembers. */
        stickyKeys: number;
    }

    /** `cluster.stats()`: a snapshot, taken when called. */
    interface Stats {
        /** Date.now() of the snapshot. */
        time: number;
        primary: { pid: number; uptime: number; rss: number; cpu: number };
        /** The scheduling policy in use, and the sticky key with policy 'sticky'. */
        routing: { policy: "none" | "rr" | "least" | "sticky" | "random"; sticky: string | null };
        /** Every worker whose process has not exited. */
        workers: WorkerStats[];
        /** The listeners the primary holds ([] where `cluster.native` is false: node:cluster does not say). */
        listeners: ListenerStats[];
        /** Connections served by another worker than the one first chosen, by why. */
        rerouted: { died: number; draining: number; stalled: number; busy: number; refused: number; outOfFds: number } | null;
        /** Workers replaced by the supervisor, by why. */
        restarts: { crash: number; hang: number; memory: number; reload: number };
        reloads: number;
        /** Sums over the live workers; `accepted` and `handoff` include the workers that are gone. */
        totals: {
            workers: number;
            accepted: number | null;
            active: number | null;
            pending: number | null;
            rss: number;
            cpu: number;
            handoff: HandoffStats | null;
        };
        /** Upper bounds (seconds) of the hand-off buckets; +Inf follows. */
        handoffBounds: number[];
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
        /**
         * Where the policy lets the kernel decide (round-robin on TCP, Linux): `'kernel'` puts each connection in
         * the accept queue of its worker's own socket of a steered `SO_REUSEPORT` group, `'primary'` has the
         * primary accept and hand it over (RS_CLUSTER_PLACEMENT). Default `'primary'`.
         */
        placement?: "kernel" | "primary" | undefined;
        /**
         * A unix socket path (mode 0600) on which `rs-cluster status|reload|stop <path>` reach this primary
         * (RS_CLUSTER_CONTROL). A socket file no primary answers on is replaced; one a live primary answers on is
         * an EADDRINUSE 'error'.
         */
        control?: string | undefined;
        /**
         * Serve GET /metrics (Prometheus text), GET /stats (JSON), the status page GET / and the probes GET /healthz
         * and /readyz from the primary at `[host:]port`
         * (host default 127.0.0.1) or a port number (RS_CLUSTER_METRICS). A listen error such as
         * EADDRINUSE is the cluster's 'error'.
         */
        metrics?: string | number | undefined;
        /**
         * With `metrics`: GET /stats and /metrics answer only requests with `Authorization: Bearer <token>`
         * (401 otherwise); the probes and the status page's own files stay open (RS_CLUSTER_METRICS_TOKEN).
         * 1 to 1024 visible ASCII characters.
         */
        metricsToken?: string | undefined;
    }
    interface Cluster {
        /**
         * true when the native primary runs; false when rs-cluster is node:cluster itself (no native binary for
         * this platform, or RS_CLUSTER_NATIVE=0), with the additions that need no Rust.
         */
        readonly native: boolean;
        /** Each new connection to the worker with the fewest live connections (NODE_CLUSTER_SCHED_POLICY=least). */
        readonly SCHED_LEAST: number;
        /** A client's connections to one worker, by `settings.sticky` (NODE_CLUSTER_SCHED_POLICY=sticky). */
        readonly SCHED_STICKY: number;
        /** The less loaded of two workers drawn at random (NODE_CLUSTER_SCHED_POLICY=random). */
        readonly SCHED_RANDOM: number;
        /**
         * Rolling replacement of every worker, one at a time: its successor is forked and becomes ready,
         * then the old one stops getting connections, drains and exits. Rejects with
         * `code: 'ERR_RS_CLUSTER_RELOAD'` (the old workers keep serving) if a successor never becomes ready.
         */
        reload(options?: cluster.ReloadOptions): Promise<void>;
        /** A snapshot of the workers, listeners and cluster-wide counters (primary only). */
        stats(): cluster.Stats;
        /** The same as Prometheus text exposition, format 0.0.4 (primary only). */
        metrics(): string;
        addListener(event: "restart", listener: (worker: Worker, info: cluster.RestartInfo) => void): this;
        emit(event: "restart", worker: Worker, info: cluster.RestartInfo): boolean;
        on(event: "restart", listener: (worker: Worker, info: cluster.RestartInfo) => void): this;
        once(event: "restart", listener: (worker: Worker, info: cluster.RestartInfo) => void): this;
        prependListener(event: "restart", listener: (worker: Worker, info: cluster.RestartInfo) => void): this;
        prependOnceListener(event: "restart", listener: (worker: Worker, info: cluster.RestartInfo) => void): this;
    }
}

export = cluster;
