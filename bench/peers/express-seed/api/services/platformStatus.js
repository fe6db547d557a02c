'use strict';
// The status document from Postgres: the same table, columns and shape as the Django
// service's platform_status_from_db (connectors/selectors.py), so both answer identical bytes.

const { Pool } = require('pg');

// The registry's order (connectors/providers.py): every provider is listed, connected or not.
const PROVIDERS = [
  'google_calendar',
  'spotify',
  'github',
  'youtube',
  'discord',
  'linkedin',
  'reddit',
];

// Python's datetime.isoformat() in UTC with "+00:00" written as "Z": microseconds when there
// are any, none at all when they are zero. Formatted by Postgres because a JS Date keeps only
// milliseconds.
const isoUtc = (column) =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')` +
  ` || CASE to_char(${column}, 'US') WHEN '000000' THEN '' ELSE '.' || to_char(${column}, 'US') END` +
  ` || 'Z'`;

// Public columns only: the encrypted token columns are never read.
const STATUS_SQL = `
  SELECT provider, is_active, status,
         ${isoUtc('connected_at')} AS connected_at,
         ${isoUtc('last_sync_at')} AS last_sync_at,
         last_sync_status, version::text AS version
    FROM connectors_platformconnection
   WHERE user_id = $1`;

let pool = null;

function connect({ databaseUrl, pgPoolMax }) {
  pool = new Pool({ connectionString: databaseUrl, max: pgPoolMax });
  pool.on('error', (err) => console.error(`Postgres pool error: ${err.message}`));
  return pool;
}

async function ready() {
  await pool.query('SELECT 1 FROM connectors_platformconnection LIMIT 1');
}

function notConnected() {
  return {
    connected: false,
    status: 'not_connected',
    connected_at: null,
    last_sync_at: null,
    last_sync_status: null,
    version: 0,
  };
}

function toVersion(text) {
  const version = Number(text);
  if (!Number.isSafeInteger(version)) throw new Error(`version ${text} is not a safe integer`);
  return version;
}

async function platformStatusFromDb(userId) {
  const platforms = {};
  for (const name of PROVIDERS) platforms[name] = notConnected();
  const { rows } = await pool.query(STATUS_SQL, [userId]);
  for (const row of rows) {
    if (!Object.hasOwn(platforms, row.provider)) continue; // removed from the registry
    platforms[row.provider] = {
      connected: Boolean(row.is_active && row.status === 'connected'),
      status: row.is_active ? row.status : 'disconnected',
      connected_at: row.connected_at,
      last_sync_at: row.last_sync_at,
      last_sync_status: row.last_sync_status,
      version: toVersion(row.version),
    };
  }
  return { user_id: userId, platforms };
}

async function close() {
  if (pool) {
    const p = pool;
    pool = null;
    await p.end();
  }
}

module.exports = { PROVIDERS, connect, ready, close, platformStatusFromDb };
