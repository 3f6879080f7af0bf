// expect: TS2305 — there is no forkAll export.
import { forkAll } from 'rs-cluster';
forkAll();
