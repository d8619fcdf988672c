// A minimal node http server for bench/driver.py: keep-alive, one small
// fixed body per request, the shape most node services answer with.
//
//     node nodeserver.js PORT
'use strict';
const http = require('http');
const port = Number(process.argv[2]);
const body = Buffer.from('hello from node, a small body for the traceshim benchmark\n');
http.createServer((req, res) => {
  res.writeHead(200, {'Content-Type': 'text/plain', 'Content-Length': body.length});
  res.end(body);
}).listen(port, '127.0.0.1');
