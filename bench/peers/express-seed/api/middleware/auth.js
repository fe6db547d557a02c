'use strict';
// Every request's Supabase access token, verified with jsonwebtoken (HS256, the legacy shared
// secret), with the same rules as the Django service's connectors/auth.py: a user token
// (role "authenticated", aud "authenticated", a UUID sub) acts for its own user, a
// service-role token for anyone; anything else is a 401.

const { createSecretKey } = require('node:crypto');
const jwt = require('jsonwebtoken');

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_TOKEN_LENGTH = 8192;

function error(code, message) {
  return { success: false, error: { code, message } };
}

function unauthorized(res, code, message) {
  res.set('WWW-Authenticate', 'Bearer realm="connectors"');
  return res.status(401).json(error(code, message));
}

function makeAuthenticate({ jwtSecret, jwtLeewaySeconds, supabaseUrl }) {
  // One KeyObject for the process: given the string, jsonwebtoken 9 builds a new key on every
  // verify, ~0.5 ms of CPU a request (auth0/node-jsonwebtoken #966, #1046).
  const key = createSecretKey(Buffer.from(jwtSecret, 'utf8'));
  const issuer = supabaseUrl ? `${supabaseUrl}/auth/v1` : null;
  const options = { algorithms: ['HS256'], clockTolerance: jwtLeewaySeconds };

  function claimsOf(token) {
    const claims = jwt.verify(token, key, options);
    if (typeof claims.exp !== 'number') throw new jwt.JsonWebTokenError('exp required');
    // PyJWT refuses an iat in the future; jsonwebtoken does not check it.
    if (typeof claims.iat === 'number' && claims.iat > Date.now() / 1000 + jwtLeewaySeconds) {
      throw new jwt.NotBeforeError('iat in the future', new Date(claims.iat * 1000));
    }
    return claims;
  }

  return function authenticate(req, res, next) {
    const parts = (req.headers.authorization || '').trim().split(/\s+/).filter(Boolean);
    if (parts.length === 0) {
      return unauthorized(res, 'not_authenticated', 'Authentication credentials were not provided.');
    }
    if (parts[0].toLowerCase() !== 'bearer' || parts.length !== 2) {
      return unauthorized(
        res,
        'authentication_failed',
        "Malformed Authorization header: expected 'Bearer <access token>'.",
      );
    }
    const token = parts[1];
    if (token.length > MAX_TOKEN_LENGTH) {
      return unauthorized(res, 'authentication_failed', 'The access token is malformed.');
    }
    let claims;
    try {
      claims = claimsOf(token);
    } catch (err) {
      let message = 'The access token is not valid.';
      if (err instanceof jwt.TokenExpiredError) message = 'The access token has expired.';
      else if (err instanceof jwt.NotBeforeError) message = 'The access token is not valid yet.';
      return unauthorized(res, 'authentication_failed', message);
    }
    if (claims.role === 'service_role') {
      req.principal = { role: 'service_role', userId: null };
      return next();
    }
    if (claims.role !== 'authenticated') {
      return unauthorized(
        res,
        'authentication_failed',
        "This API needs a signed-in user's access token (role 'authenticated').",
      );
    }
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes('authenticated')) {
      return unauthorized(res, 'authentication_failed', "The access token's audience is not accepted.");
    }
    if (issuer && claims.iss !== issuer) {
      return unauthorized(res, 'authentication_failed', 'The access token was issued by another project.');
    }
    if (typeof claims.sub !== 'string' || !UUID.test(claims.sub)) {
      return unauthorized(res, 'authentication_failed', 'The access token has no valid subject.');
    }
    req.principal = { role: 'authenticated', userId: claims.sub.toLowerCase() };
    return next();
  };
}

module.exports = { UUID, error, makeAuthenticate };
