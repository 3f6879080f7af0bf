// `require('rs-cluster/register')` under module commonjs / node10.
import 'rs-cluster/register';
import Register = require('rs-cluster/register');

type NoExports = keyof typeof Register extends never ? true : false;
export const noExports: NoExports = true;
