// expect: TS2322 — ClusterSettings.exec is a string.
import { setupPrimary } from 'rs-cluster';
setupPrimary({ exec: 42 });
