// expect: TS2322 — a Worker's 'listening' listener gets an Address whose port is a number.
import type { Worker } from 'rs-cluster';
export function watch(worker: Worker): void {
  worker.on('listening', (address) => {
    const port: string = address.port;
    return port;
  });
}
