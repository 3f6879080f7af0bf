// CommonJS consumer (module commonjs, moduleResolution node10).
import cluster = require('rs-cluster');
import clusterDefault from 'rs-cluster'; // esModuleInterop
import { fork, isPrimary, workers, Worker } from 'rs-cluster';
import nodeCluster from 'node:cluster';
import type * as NodeCluster from 'node:cluster';
import type { ChildProcess } from 'node:child_process';
import type * as net from 'node:net';

type Equals<A, B> =
  (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;

const asNode: typeof nodeCluster = cluster;
const sameDefault: Equals<typeof clusterDefault, typeof cluster> = true;
const sameWorker: Equals<cluster.Worker, NodeCluster.Worker> = true;
const sameWorkerClass: Equals<typeof cluster.Worker, typeof NodeCluster.Worker> = true;
const sameSettings: Equals<cluster.ClusterSettings, NodeCluster.ClusterSettings> = true;
const sameAddress: Equals<cluster.Address, NodeCluster.Address> = true;
const sameCluster: Equals<cluster.Cluster, NodeCluster.Cluster> = true;
const sameFork: Equals<typeof cluster.fork, typeof nodeCluster.fork> = true;
const chained: typeof cluster = cluster.once('fork', () => {}).on('exit', () => {});

function useWorker(w: cluster.Worker): void {
  const id: number = w.id;
  const child: ChildProcess = w.process;
  const sent: boolean = w.send({ cmd: 'ping' }, (error) => { const e: Error | null = error; });
  w.kill('SIGTERM');
  w.destroy();
  const self: cluster.Worker = w.disconnect();
  const state: boolean = w.isConnected() && !w.isDead() && !w.exitedAfterDisconnect;
  w.on('exit', (code, signal) => { const c: number = code; const s: string = signal; })
    .on('listening', (address) => { const a: cluster.Address = address; })
    .on('message', (message, handle) => { const h: net.Socket | net.Server = handle; });
  const isWorkerInstance: boolean = w instanceof Worker && w instanceof cluster.Worker;
}

if (cluster.isPrimary && isPrimary && !cluster.isWorker && cluster.isMaster) {
  cluster.setupPrimary({ exec: 'worker.js', silent: false });
  cluster.setupMaster({ args: ['a'] });
  const policy: number = cluster.schedulingPolicy;
  cluster.schedulingPolicy = policy === cluster.SCHED_RR ? cluster.SCHED_NONE : cluster.SCHED_RR;
  const settings: cluster.ClusterSettings = cluster.settings;
  const w: Worker = fork({ PORT: '3000' });
  const w2: cluster.Worker = cluster.fork();
  useWorker(w);
  useWorker(w2);
  const known: NodeJS.Dict<cluster.Worker> | undefined = workers;
  cluster.on('fork', (worker) => { const x: cluster.Worker = worker; })
    .on('online', (worker) => { const x: cluster.Worker = worker; })
    .on('listening', (worker, address) => { const a: cluster.Address = address; })
    .on('disconnect', (worker) => { const x: cluster.Worker = worker; })
    .on('exit', (worker, code, signal) => { const c: number = code; const s: string = signal; })
    .on('message', (worker, message, handle) => { const x: cluster.Worker = worker; })
    .on('setup', (s) => { const x: cluster.ClusterSettings = s; });
  cluster.disconnect(() => {});
} else {
  const me: cluster.Worker | undefined = cluster.worker;
  me?.send('ready');
}

export { asNode, sameDefault, sameWorker, sameWorkerClass, sameSettings, sameAddress, sameCluster, sameFork, chained };
