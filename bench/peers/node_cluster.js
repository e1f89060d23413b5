// Node's cluster module, the peer of bench/http.py.
//
//   node bench/peers/node_cluster.js PORT WORKERS [hello|pid]
//
// The primary forks WORKERS workers, each an http.createServer listening on 127.0.0.1:PORT;
// with SCHED_RR the primary accepts and hands connections to the workers round-robin. A worker
// that dies is replaced (the 'exit' handler of the Node cluster docs). SIGTERM / SIGINT stop
// the primary and its workers.
'use strict';

const cluster = require('node:cluster');
const http = require('node:http');

cluster.schedulingPolicy = cluster.SCHED_RR; // before the first fork, or it is ignored

const port = Number(process.argv[2] || 8000);
const workers = Number(process.argv[3] || 2);
const app = process.argv[4] || 'hello';

if (cluster.isPrimary) {
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', () => {
    if (!stopping) cluster.fork();
    else if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  const stop = () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers)) worker.kill();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  // The hello world of the Node.js cluster article, as written there: the same app every
  // server in this benchmark serves.
  http
    .createServer((req, res) => {
      res.writeHead(200);
      res.end(app === 'pid' ? String(process.pid) : 'hello world\n');
    })
    .listen(port, '127.0.0.1');
}
