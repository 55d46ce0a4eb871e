// Outlier detection must blame the site that failed, not the site that reported the failure. A site
// that forwards a write to its owner (or a session read to a peer, or waits for a quorum of peers)
// answers late when that other site is paused; it is healthy, and its late answer is a valid one.
// Ejecting it would move its traffic onto the other healthy sites, which forward to the same paused
// owner, are ejected in turn, and leave the router failing open (issue #16: gray failure).
//
// So, as pure functions of the request and of what came back:
// - `requestReach`: whether a site may involve another site before it answers (`peers`) or
//   serves the request alone (`self`). `peers` requests get a timeout longer than the site's own
//   forward budget, so that the site answers first, and their timeouts do not count against it.
// - `failureCountsAgainstSite`: refused connections, resets and timeouts of requests the site
//   serves alone eject it at once (a paused site is still caught by these and by active checks).
// - `attributeAnswer`: a site that answered 503 (owner moving or unreachable, quorum not reached),
//   502 `Tandem-Outcome: unknown` (its forward got no answer) or 504 `durability-timeout` /
//   `lease-expired` (the owner could not confirm in time) has answered; only other 500/502/504
//   count against it.
import type { UpstreamFailure } from '../platform/upstream-errors.js';

export type RequestReach = 'self' | 'peers';

export interface TableFacts {
  /** `global` or `partitioned`: writes (and strong reads) go to the item's owner. */
  owned: boolean;
  durability: 'local' | 'quorum' | 'all';
}

/** The data API paths whose handling depends on the table: item, scan, rewind. */
const tablePath = /^\/v1\/tables\/([^/?]+)\/(items|rewind)(?:\/([^/?]+))?(?:\?|$)/;

function tableOf(encoded: string): string | undefined {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
}

function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return typeof v === 'string' ? v.trim().toLowerCase() : undefined;
}

/**
 * Whether the site that receives this request may hand it to, or wait for, another site before it
 * answers (site/http-server.ts): writes to owned tables (forwarded to the owner), writes of
 * `quorum` or `all` durability (acks of peers), `strong` reads of owned tables (the owner),
 * `session` reads (a bounded wait, then a peer that covers the session), batches and rewinds
 * (their tables are in the body, or they go to the owner), and any other write the router does not
 * know (topology changes run consensus rounds). Everything else the site serves alone.
 */
export function requestReach(
  method: string,
  headers: Record<string, string | string[] | undefined>,
  path: string,
  tables: ReadonlyMap<string, TableFacts>,
): RequestReach {
  const read = method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
  const m = tablePath.exec(path);
  if (m === null) return read ? 'self' : 'peers';
  const table = tables.get(tableOf(m[1]!) ?? '');
  const isItem = m[2] === 'items' && m[3] !== undefined;
  if (m[2] === 'rewind') return 'peers';
  if (read) {
    const consistency = headerValue(headers, 'tandem-consistency');
    if (consistency === 'session' && headers['tandem-session'] !== undefined) return 'peers';
    if (consistency === 'strong' && isItem && table?.owned === true) return 'peers';
    return 'self';
  }
  if (!isItem) return 'peers';
  if (table === undefined) return 'self'; // 404: unknown table
  if (table.owned) return 'peers';
  const durability = headerValue(headers, 'tandem-durability') ?? table.durability;
  return durability === 'local' ? 'self' : 'peers';
}

/** Whether a failed attempt is the site's own failure (ejects it at once). */
export function failureCountsAgainstSite(failure: UpstreamFailure, reach: RequestReach): boolean {
  // A timeout of a request the site may have handed on says nothing of the site: the other site may
  // be the slow one. Refused connections and resets are the site's own.
  return failure !== 'timeout' || reach === 'self';
}

export type AnswerVerdict = 'served' | 'site-failed';

/** 504 problem types a healthy owner answers when it could not confirm a write in time (outcome unknown). */
const unconfirmedTypes = new Set(['durability-timeout', 'lease-expired']);

/** Whether an answer shows the site at fault (`site-failed`) or healthy (`served`). */
export function attributeAnswer(status: number, outcomeHeader: string | string[] | undefined, problemType: string | undefined): AnswerVerdict {
  switch (status) {
    case 500:
      return 'site-failed';
    case 502:
      // the site's forward of a write got no answer from the owner: it speaks of the owner
      return outcomeHeader === 'unknown' ? 'served' : 'site-failed';
    case 503:
      // every site answers 503 while an owner fails over; it means "not now", not "broken"
      return 'served';
    case 504:
      return problemType !== undefined && unconfirmedTypes.has(problemType) ? 'served' : 'site-failed';
    default:
      return 'served';
  }
}

const problemTypePrefix = 'https://tandem.dev/problems/';

/**
 * The `type` of an RFC 9457 problem body, without Tandem's URI prefix, or undefined when the
 * bytes are not a JSON object with a string `type`.
 */
export function problemTypeOf(body: Buffer): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const type = (parsed as { type?: unknown }).type;
  if (typeof type !== 'string') return undefined;
  return type.startsWith(problemTypePrefix) ? type.slice(problemTypePrefix.length) : type;
}
