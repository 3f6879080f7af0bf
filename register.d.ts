// `rs-cluster/register` only installs hooks (require('cluster') and
// import 'node:cluster' then load rs-cluster); it exports nothing.
export {};
