'use strict';
// The seed's api/services/redisClient.js: one ioredis client per process, the seed's key
// names and TTLs, JSON.stringify / JSON.parse, and graceful degradation (no URL or a failing
// Redis means "no cache", never a failed request).

const Redis = require('ioredis');

const CACHE_TTL = {
  PLATFORM_STATUS: 300, // 5 minutes
  USER_PROFILE: 600, // 10 minutes
  SOUL_SIGNATURE: 900, // 15 minutes
  EXTRACTION_JOB: 60, // 1 minute
};

const CACHE_KEYS = {
  platformStatus: (userId) => `platform_status:${userId}`,
  userProfile: (userId) => `user_profile:${userId}`,
  soulSignature: (userId) => `soul_signature:${userId}`,
  extractionJob: (jobId) => `extraction_job:${jobId}`,
};

let redisClient = null;

function connect({ redisUrl, keyPrefix }) {
  if (!redisUrl) {
    console.warn('⚠️ Redis URL not configured - caching disabled (using database fallback)');
    return null;
  }
  redisClient = new Redis(redisUrl, {
    keyPrefix,
    // A request must not queue behind a reconnect: with Redis down it falls back to the
    // database at once instead of waiting for ioredis' 20 retries.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
  redisClient.on('error', (err) => {
    console.error(`Redis error: ${err.message}`);
  });
  return redisClient;
}

// At start a configured Redis must answer: a peer that silently ran without its cache would
// benchmark the database instead.
async function ready(timeoutMs = 10000) {
  if (!redisClient) return;
  if (redisClient.status !== 'ready') {
    let timer;
    await new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis not ready after ${timeoutMs} ms`)), timeoutMs);
      redisClient.once('ready', resolve);
    }).finally(() => clearTimeout(timer));
  }
  await redisClient.ping();
}

async function get(key) {
  if (!redisClient) return null;
  try {
    const value = await redisClient.get(key);
    return value === null ? null : JSON.parse(value);
  } catch (err) {
    console.error(`Redis GET ${key} failed: ${err.message}`);
    return null;
  }
}

async function set(key, value, ttl) {
  if (!redisClient) return false;
  try {
    await redisClient.setex(key, ttl, JSON.stringify(value));
    return true;
  } catch (err) {
    console.error(`Redis SETEX ${key} failed: ${err.message}`);
    return false;
  }
}

async function del(key) {
  if (!redisClient) return false;
  try {
    await redisClient.del(key);
    return true;
  } catch (err) {
    console.error(`Redis DEL ${key} failed: ${err.message}`);
    return false;
  }
}

const getCachedPlatformStatus = (userId) => get(CACHE_KEYS.platformStatus(userId));

const setCachedPlatformStatus = (userId, status) =>
  set(CACHE_KEYS.platformStatus(userId), status, CACHE_TTL.PLATFORM_STATUS);

async function invalidatePlatformStatusCache(userId) {
  const done = await del(CACHE_KEYS.platformStatus(userId));
  if (done) console.log(`🗑️ Invalidated platform_status cache for user ${userId}`);
  return done;
}

async function close() {
  if (redisClient) {
    const client = redisClient;
    redisClient = null;
    await client.quit().catch(() => client.disconnect());
  }
}

module.exports = {
  CACHE_TTL,
  CACHE_KEYS,
  connect,
  ready,
  close,
  get,
  set,
  del,
  getCachedPlatformStatus,
  setCachedPlatformStatus,
  invalidatePlatformStatusCache,
};
