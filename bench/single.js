'use strict';
// The one-process baseline: the same hello-world server, no cluster at all.

const http = require('node:http');

http.createServer((req, res) => {
  res.writeHead(200);
  res.end('hello world\n');
}).listen(+process.env.PORT || 8000, '127.0.0.1');
