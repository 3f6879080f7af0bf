// ESM consumer (module nodenext): default import and every named export.
import cluster, {
  isWorker, isMaster, isPrimary, Worker, workers, worker, settings,
  SCHED_NONE, SCHED_RR, schedulingPolicy, fork, setupPrimary, setupMaster, disconnect,
} from 'rs-cluster';
import type { Cluster, ClusterSettings, Address } from 'rs-cluster';
import nodeCluster from 'node:cluster';
import type * as NodeCluster from 'node:cluster';
import type { ChildProcess } from 'node:child_process';
import type * as net from 'node:net';

type Equals<A, B> =
  (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;

// The default import is the cluster object (not a module namespace), typed
// as node:cluster's.
const asCluster: NodeCluster.Cluster = cluster;
const asNode: typeof nodeCluster = cluster;
const sameWorker: Equals<Worker, NodeCluster.Worker> = true;
const sameWorkerClass: Equals<typeof Worker, typeof NodeCluster.Worker> = true;
const sameSettings: Equals<ClusterSettings, NodeCluster.ClusterSettings> = true;
const sameAddress: Equals<Address, NodeCluster.Address> = true;
const sameCluster: Equals<Cluster, NodeCluster.Cluster> = true;
const sameFork: Equals<typeof fork, typeof nodeCluster.fork> = true;
// on()/once() return the cluster object itself, so calls chain.
const chained: typeof cluster = cluster.on('fork', () => {}).once('exit', () => {});
const sameWorkers: Equals<typeof workers, typeof nodeCluster.workers> = true;
const sameWorkerProp: Equals<typeof worker, typeof nodeCluster.worker> = true;
const sameDisconnect: Equals<typeof disconnect, typeof nodeCluster.disconnect> = true;
const sameSetup: Equals<typeof setupPrimary, typeof nodeCluster.setupPrimary> = true;
const sameSetupMaster: Equals<typeof setupMaster, typeof nodeCluster.setupMaster> = true;
const flags: boolean[] = [isWorker, isMaster, isPrimary, cluster.isPrimary, cluster.isWorker, cluster.isMaster];
const policies: number[] = [SCHED_NONE, SCHED_RR, schedulingPolicy, cluster.SCHED_RR, cluster.SCHED_NONE];
const current: ClusterSettings = settings;

function useWorker(w: Worker): void {
  const id: number = w.id;
  const child: ChildProcess = w.process;
  const sent: boolean = w.send({ cmd: 'ping' });
  w.send('hello', (error) => { const e: Error | null = error; });
  w.send('hello', undefined, { keepOpen: true }, (error: Error | null) => {});
  w.kill();
  w.kill('SIGTERM');
  w.destroy();
  w.destroy('SIGKILL');
  const self: Worker = w.disconnect();
  const connected: boolean = w.isConnected();
  const dead: boolean = w.isDead();
  const voluntary: boolean = w.exitedAfterDisconnect;
  w.on('online', () => {})
    .on('listening', (address) => { const a: Address = address; const port: number = address.port; })
    .on('message', (message, handle) => { const h: net.Socket | net.Server = handle; })
    .on('error', (error) => { const e: Error = error; })
    .once('disconnect', () => {})
    .once('exit', (code, signal) => { const c: number = code; const s: string = signal; });
  const isWorkerInstance: boolean = w instanceof Worker && w instanceof cluster.Worker;
}

if (isPrimary) {
  setupPrimary({ exec: 'worker.js', args: ['--port', '0'], silent: true, serialization: 'advanced' });
  setupMaster({ execArgv: ['--max-old-space-size=64'], inspectPort: () => 9230 });
  cluster.setupPrimary();
  cluster.schedulingPolicy = SCHED_RR;
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const exec: string | undefined = cluster.settings.exec;

  const first: Worker = fork({ PORT: '3000' });
  const second: Worker = cluster.fork();
  useWorker(first);
  useWorker(second);
  for (const id in workers) {
    const each: Worker | undefined = workers?.[id];
    each?.send('hi');
  }
  const all: Worker[] = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);

  cluster
    .on('fork', (w) => { const x: Worker = w; })
    .on('online', (w) => { const x: Worker = w; })
    .on('listening', (w, address) => { const x: Worker = w; const a: Address = address; })
    .on('disconnect', (w) => { const x: Worker = w; })
    .on('exit', (w, code, signal) => { const x: Worker = w; const c: number = code; const s: string = signal; })
    .on('message', (w, message, handle) => { const x: Worker = w; const m: any = message; const h: net.Socket | net.Server = handle; })
    .on('setup', (s) => { const x: ClusterSettings = s; });
  cluster.once('exit', (w) => { if (!w.exitedAfterDisconnect) cluster.fork(); });
  cluster.prependListener('online', (w: Worker) => {});
  cluster.off('fork', () => {});

  disconnect(() => {});
  cluster.disconnect();
} else {
  const me: Worker | undefined = worker;
  cluster.worker?.send({ ready: true });
  process.exit(me ? 0 : 1);
}

export { asCluster, asNode, sameWorker, sameWorkerClass, sameSettings, sameAddress, sameCluster, sameFork, chained,
  sameWorkers, sameWorkerProp, sameDisconnect, sameSetup, sameSetupMaster, flags, policies, current };
