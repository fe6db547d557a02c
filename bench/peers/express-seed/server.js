'use strict';
// The seed's Express + ioredis service, status endpoint only, as the benchmark's peer: Node's
// cluster with WORKERS processes sharing one port, each with its own ioredis client and pg Pool.
// Settings: api/config.js. The primary prints "express-seed ready ..." once every worker listens.

const cluster = require('node:cluster');
const config = require('./api/config').load();

function runPrimary() {
  let listening = 0;
  let ready = false;
  let stopping = false;
  let failed = false;

  const stop = () => {
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers);
    if (workers.length === 0) process.exit(failed ? 1 : 0);
    for (const worker of workers) worker.kill('SIGTERM');
  };

  cluster.on('listening', (worker, address) => {
    listening += 1;
    if (!ready && listening === config.workers) {
      ready = true;
      console.log(
        `express-seed ready: ${config.workers} workers on http://${config.host}:${address.port}` +
          ` (redis ${config.redisUrl ? 'on' : 'off'}, pg pool ${config.pgPoolMax} per worker)`,
      );
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping && !ready) {
      // A worker that cannot start (bad URL, no table, Redis down) will not start on retry.
      console.error(`express-seed: worker ${worker.process.pid} failed to start (${signal || code})`);
      failed = true;
      stop();
    } else if (!stopping) {
      console.error(`express-seed: worker ${worker.process.pid} died (${signal || code}); starting another`);
      cluster.fork();
    }
    if (stopping && Object.keys(cluster.workers).length === 0) process.exit(failed ? 1 : 0);
  });
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  for (let i = 0; i < config.workers; i += 1) cluster.fork();
}

async function runWorker() {
  const { createApp } = require('./api/app');
  const redisClient = require('./api/services/redisClient');
  const platformStatus = require('./api/services/platformStatus');

  redisClient.connect(config);
  platformStatus.connect(config);
  await Promise.all([redisClient.ready(), platformStatus.ready()]);

  const server = createApp(config).listen(config.port, config.host);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    // In-flight requests finish; then the clients close. Bounded, whatever the sockets do.
    server.close(() => {
      Promise.allSettled([redisClient.close(), platformStatus.close()]).then(() => process.exit(0));
    });
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker().catch((err) => {
    console.error(`express-seed worker ${process.pid}: ${err.message}`);
    process.exit(1);
  });
}
