// expect: TS2345 — disconnect() takes an optional callback, not a string.
import { disconnect } from 'rs-cluster';
disconnect('now');
