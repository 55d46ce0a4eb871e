// Session tokens (read-your-writes across sites): the join of the session's write dots and the
// contexts of the items it read, as a version vector, carried base64url-encoded in `Tandem-Session`.
import { RequestError } from '../core/errors.js';
import { canonicalVector, joinVectors, type VersionVector } from '../core/vector.js';

const originsMax = 256;

export function encodeSession(vv: VersionVector): string {
  return Buffer.from(JSON.stringify(canonicalVector(vv)), 'utf8').toString('base64url');
}

export function decodeSession(token: string): VersionVector {
  const bad = (why: string) =>
    RequestError.badRequest(`Tandem-Session: ${why}`, [{ path: 'header.tandem-session', message: why }]);
  if (token.length > 16_384 || !/^[A-Za-z0-9_-]*$/.test(token)) throw bad('expected a base64url token issued by Tandem');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw bad('not a session token');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw bad('not a session token');
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (entries.length > originsMax) throw bad(`more than ${originsMax} origins`);
  const vv: VersionVector = {};
  for (const [origin, seq] of entries) {
    if (!/^[a-z0-9-]{1,32}\.[0-9a-z]{1,16}$/.test(origin) || typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1)
      throw bad('malformed entry');
    vv[origin] = seq;
  }
  return vv;
}

export function joinSession(token: VersionVector | undefined, more: VersionVector): VersionVector {
  return joinVectors(token ?? {}, more);
}
