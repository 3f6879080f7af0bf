// expect: TS2339 — the named fork() returns a Worker, which has no toUpperCase().
import { fork } from 'rs-cluster';
fork({ PORT: '3000' }).toUpperCase();
