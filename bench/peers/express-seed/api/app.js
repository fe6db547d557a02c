'use strict';
// The Express application: the connectors router, JSON 404s and errors.

const express = require('express');
const { error, makeAuthenticate } = require('./middleware/auth');
const { makeRouter } = require('./routes/connectors');

function createApp(config) {
  const app = express();
  app.disable('x-powered-by');
  const authenticate = makeAuthenticate(config);
  app.use('/api/connectors', makeRouter({ authenticate, logCache: config.logCache }));
  app.use((req, res) => res.status(404).json(error('not_found', 'Not found.')));
  // Express 4 needs the four arguments to know this is the error handler.
  // eslint-disable-next-line no-unused-vars
  app.use((err, req, res, next) => {
    // pg's errors carry a SQLSTATE code; network failures reaching Postgres carry errno codes.
    if (err && (err.severity || ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT'].includes(err.code))) {
      console.error(`Database error: ${err.code || err.message}`);
      res.set('Retry-After', '5');
      return res.status(503).json(error('database_unavailable', 'The database is unavailable; try again shortly.'));
    }
    console.error(err);
    return res.status(500).json(error('server_error', 'Internal server error.'));
  });
  return app;
}

module.exports = { createApp };
