// Peer authentication: every peer request carries `Tandem-Peer: <site> <unix ms> <hmac>`, an
// HMAC-SHA256 with the cluster secret over the cluster name, site, time, method and path. The
// secret never travels; a request from an unknown site, another cluster, or too old is refused.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const peerHeader = 'tandem-peer';
const clockToleranceMs = 5 * 60_000;

export interface PeerAuthConfig {
  cluster: string;
  secret: string;
  knownSites: ReadonlySet<string>;
}

function mac(cfg: PeerAuthConfig, site: string, atMs: number, method: string, path: string): string {
  return createHmac('sha256', cfg.secret).update(`${cfg.cluster}\n${site}\n${atMs}\n${method}\n${path}`).digest('base64url');
}

export function signPeerRequest(cfg: PeerAuthConfig, site: string, nowMs: number, method: string, path: string): string {
  const at = Math.floor(nowMs);
  return `${site} ${at} ${mac(cfg, site, at, method, path)}`;
}

export type PeerAuthResult = { ok: true; site: string } | { ok: false; reason: string };

export function verifyPeerRequest(
  cfg: PeerAuthConfig,
  header: string | undefined,
  nowMs: number,
  method: string,
  path: string,
): PeerAuthResult {
  if (header === undefined) return { ok: false, reason: 'no Tandem-Peer header' };
  const parts = header.split(' ');
  if (parts.length !== 3) return { ok: false, reason: 'malformed Tandem-Peer header' };
  const [site, atRaw, given] = parts as [string, string, string];
  if (!cfg.knownSites.has(site)) return { ok: false, reason: `unknown site ${site.slice(0, 40)}` };
  const at = Number(atRaw);
  if (!Number.isSafeInteger(at) || Math.abs(nowMs - at) > clockToleranceMs) return { ok: false, reason: 'stale or future timestamp' };
  const expected = Buffer.from(mac(cfg, site, at, method, path));
  const got = Buffer.from(given);
  if (expected.length !== got.length || !timingSafeEqual(expected, got))
    return { ok: false, reason: 'bad signature (wrong secret or cluster)' };
  return { ok: true, site };
}
