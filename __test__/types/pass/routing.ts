// rs-cluster's scheduling policies on the node:cluster types.
import cluster = require('rs-cluster');

cluster.schedulingPolicy = cluster.SCHED_LEAST;
cluster.schedulingPolicy = cluster.SCHED_STICKY;
cluster.schedulingPolicy = cluster.SCHED_RANDOM;
cluster.setupPrimary({ sticky: 'ip' });
cluster.setupPrimary({ sticky: 'header:x-forwarded-for' });
cluster.setupPrimary({ sticky: 'query:sid' });
const key: string | undefined = cluster.settings.sticky;
export { key };
