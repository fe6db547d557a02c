'use strict';
// The seed's api/routes/connectors.js, status endpoint only: Redis first, the database on a
// miss, SETEX 300 of the JSON document, the seed's envelope and log lines.

const express = require('express');
const { UUID, error } = require('../middleware/auth');
const redisClient = require('../services/redisClient');
const { platformStatusFromDb } = require('../services/platformStatus');

function elapsedMs(started) {
  return Number(process.hrtime.bigint() - started) / 1e6;
}

function makeRouter({ authenticate, logCache }) {
  const router = express.Router();

  router.get('/status/:userId', authenticate, async (req, res, next) => {
    const raw = req.params.userId;
    if (raw.length !== 36 || !UUID.test(raw)) {
      return res
        .status(400)
        .json(error('invalid_user_id', 'user_id must be a UUID such as 7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a.'));
    }
    const userId = raw.toLowerCase();
    const { principal } = req;
    if (principal.role !== 'service_role' && principal.userId !== userId) {
      return res.status(403).json(error('forbidden', 'You may only act on your own connections.'));
    }
    const started = process.hrtime.bigint();
    try {
      const cached = await redisClient.getCachedPlatformStatus(userId);
      if (cached) {
        if (logCache) {
          console.log(`✅ Cache HIT: platform_status for user ${userId}  (${elapsedMs(started).toFixed(0)}ms)`);
        }
        return res.json({ success: true, data: cached, cached: true });
      }
      const data = await platformStatusFromDb(userId);
      const stored = await redisClient.setCachedPlatformStatus(userId, data);
      if (logCache) {
        const note = stored ? ', cached for next request' : '';
        console.log(`❌ Cache MISS: platform_status for user ${userId}  (${elapsedMs(started).toFixed(0)}ms${note})`);
      }
      return res.json({ success: true, data, cached: false });
    } catch (err) {
      return next(err);
    }
  });

  return router;
}

module.exports = { makeRouter };
