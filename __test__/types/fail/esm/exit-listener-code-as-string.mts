// expect: TS2322 — the 'exit' listener gets (worker: Worker, code: number, signal: string).
import cluster from 'rs-cluster';
cluster.on('exit', (worker, code) => {
  const text: string = code;
  return text;
});
