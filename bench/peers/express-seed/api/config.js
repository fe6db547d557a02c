'use strict';
// Every setting from the environment, read once; a bad value stops the process with a message
// naming the variable (the same habit as the Django service's settings).

function fail(message) {
  throw new Error(`express-seed configuration: ${message}`);
}

function envInt(name, fallback, min) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min) {
    fail(`${name}=${JSON.stringify(raw)} must be an integer >= ${min}.`);
  }
  return Number(raw);
}

function envBool(name) {
  const raw = (process.env[name] || '').toLowerCase();
  if (['', '0', 'false', 'no', 'off'].includes(raw)) return false;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  return fail(`${name}=${JSON.stringify(raw)} must be one of 1/0, true/false, yes/no, on/off.`);
}

function load() {
  const databaseUrl = process.env.DATABASE_URL || '';
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
    fail('DATABASE_URL must be a postgres:// URL (the table connectors_platformconnection).');
  }
  const jwtSecret = process.env.SUPABASE_JWT_SECRET || '';
  if (!jwtSecret) fail('SUPABASE_JWT_SECRET (the HS256 secret tokens are signed with) is not set.');
  const keyPrefix = process.env.CACHE_KEY_PREFIX || '';
  if (/[{}*\s]/.test(keyPrefix)) fail('CACHE_KEY_PREFIX must have no braces, "*" or spaces.');
  return {
    host: process.env.HOST || '127.0.0.1',
    port: envInt('PORT', 3001, 0),
    workers: envInt('WORKERS', 4, 1),
    databaseUrl,
    pgPoolMax: envInt('PG_POOL_MAX', 10, 1),
    // As the seed: no Redis URL means no caching, every read from the database.
    redisUrl: process.env.REDIS_URL || process.env.UPSTASH_REDIS_URL || '',
    keyPrefix,
    jwtSecret,
    jwtLeewaySeconds: envInt('JWT_LEEWAY_SECONDS', 30, 0),
    // When set, user tokens must carry iss = <SUPABASE_URL>/auth/v1 (as the Django service).
    supabaseUrl: (process.env.SUPABASE_URL || '').replace(/\/+$/, ''),
    // The seed's "Cache HIT/MISS" lines: off by default, they would dominate a benchmark.
    logCache: envBool('LOG_CACHE'),
  };
}

module.exports = { load };
