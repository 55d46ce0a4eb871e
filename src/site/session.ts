// Session tokens (read-your-writes across sites), carried base64url-encoded in `Tandem-Session`:
// - `v`, the join of the session's write dots and the contexts of the items it read (a version
//   vector: a site serves the session once it covers it);
// - `w`, the session's latest writes to owned units that a failover could still void (acknowledged
//   at `local` durability: a quorum-acknowledged write is always below the cut), each with its units
//   and the epoch of the lease it was admitted under. A site that finds one of them void by its
//   topology answers 410 `session-lost` (ARCHITECTURE.md, "Retries and reads across a move"): the
//   session saw a write that no longer exists, and going on would show it going back in time.
// Tokens issued before `w` existed (a bare vector) are still accepted.
import { RequestError } from '../core/errors.js';
import { canonicalVector, joinVectors, type VersionVector } from '../core/vector.js';

const originsMax = 256;
/** the session's latest owned `local`-durability writes kept in its token; older ones have long replicated */
export const sessionWritesMax = 8;
const unitsMax = 16;

/** A write of the session to owned units, as its token remembers it. */
export interface SessionWrite {
  dot: string;
  units: string[];
  epoch: number;
}

export interface Session {
  v: VersionVector;
  w: SessionWrite[];
}

export function encodeSession(session: Session): string {
  const body = session.w.length === 0 ? { v: canonicalVector(session.v) } : { v: canonicalVector(session.v), w: session.w.map((x) => [x.dot, x.units, x.epoch]) };
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64url');
}

export function decodeSession(token: string): Session {
  const bad = (why: string) =>
    RequestError.badRequest(`Tandem-Session: ${why}`, [{ path: 'header.tandem-session', message: why }]);
  if (token.length > 16_384 || !/^[A-Za-z0-9_-]*$/.test(token)) throw bad('expected a base64url token issued by Tandem');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw bad('not a session token');
  }
  if (!isObject(parsed)) throw bad('not a session token');
  // a bare vector: a token issued before the session's writes were kept in it
  if (!('v' in parsed)) return { v: decodeVector(parsed, bad), w: [] };
  if (!isObject(parsed.v)) throw bad('not a session token');
  const w = parsed.w ?? [];
  if (!Array.isArray(w) || w.length > sessionWritesMax) throw bad(`at most ${sessionWritesMax} writes`);
  return { v: decodeVector(parsed.v, bad), w: w.map((x) => decodeWrite(x, bad)) };
}

function decodeVector(o: Record<string, unknown>, bad: (why: string) => RequestError): VersionVector {
  const entries = Object.entries(o);
  if (entries.length > originsMax) throw bad(`more than ${originsMax} origins`);
  const vv: VersionVector = {};
  for (const [origin, seq] of entries) {
    if (!originRe.test(origin) || !isSeq(seq)) throw bad('malformed entry');
    vv[origin] = seq;
  }
  return vv;
}

function decodeWrite(x: unknown, bad: (why: string) => RequestError): SessionWrite {
  if (!Array.isArray(x) || x.length !== 3) throw bad('malformed write');
  const [dot, units, epoch] = x as unknown[];
  if (typeof dot !== 'string' || parseSessionDot(dot) === undefined) throw bad('malformed write dot');
  if (!Array.isArray(units) || units.length === 0 || units.length > unitsMax || !units.every((u) => typeof u === 'string' && u.length > 0 && u.length <= 1100))
    throw bad('malformed write units');
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) throw bad('malformed write epoch');
  return { dot, units: units as string[], epoch };
}

const originRe = /^[a-z0-9-]{1,32}\.[0-9a-z]{1,16}$/;
const isSeq = (seq: unknown): seq is number => typeof seq === 'number' && Number.isSafeInteger(seq) && seq >= 1;
const isObject = (o: unknown): o is Record<string, unknown> => o !== null && typeof o === 'object' && !Array.isArray(o);

function parseSessionDot(dot: string): { origin: string; seq: number } | undefined {
  const i = dot.lastIndexOf(':');
  if (i <= 0) return undefined;
  const origin = dot.slice(0, i);
  const seq = Number(dot.slice(i + 1));
  return originRe.test(origin) && isSeq(seq) ? { origin, seq } : undefined;
}

/** The session joined with what a read or write showed it; `write` adds an owned write that may be voided. */
export function joinSession(session: Session | undefined, more: VersionVector, write?: SessionWrite): Session {
  const w = session?.w ?? [];
  return {
    v: joinVectors(session?.v ?? {}, more),
    w: write === undefined ? w : [...w.filter((x) => x.dot !== write.dot), write].slice(-sessionWritesMax),
  };
}

/**
 * The dots of the session's writes that `counts` (the topology's void test) finds void now: the
 * session has lost them to a failover. Empty when the site knows no topology.
 */
export function lostWrites(session: Session, counts: ((unit: string, origin: string, seq: number, epoch: number) => boolean) | undefined): string[] {
  if (counts === undefined) return [];
  const lost: string[] = [];
  for (const x of session.w) {
    const d = parseSessionDot(x.dot)!;
    if (x.units.some((u) => !counts(u, d.origin, d.seq, x.epoch))) lost.push(x.dot);
  }
  return lost;
}
