// A witness: a voting member with no data (ARCHITECTURE.md, "Topology"). Two data sites cannot form
// a majority after losing one; with a witness (ideally in a third location) they can, so the
// survivor is promoted with RPO 0. A witness answers only voter requests from the cluster's sites,
// signed like every peer request, and keeps its promises in a durable state file.
import type { Env, RequestHandler } from '../platform/env.js';
import { verifyPeerRequest, peerHeader, type PeerAuthConfig } from '../replication/auth.js';
import { msgpackResponse, problem } from '../replication/feed-server.js';
import { decodeMessage } from '../replication/protocol.js';
import type { Voter, VoterRequest } from './paxos.js';
import { isVoterRequest } from './topology-service.js';

export function witnessHandler(options: { env: Env; voter: Voter; auth: PeerAuthConfig }): RequestHandler {
  const { env, voter, auth } = options;
  const log = env.log.child({ component: 'witness' });
  return async (req) => {
    const path = req.path.split('?')[0]!;
    // the config's sites and the sites added online, less the removed ones (topology/members.ts)
    const members = voter.decided.members.filter((m) => m.kind === 'site');
    const removed = new Set(members.filter((m) => m.state === 'removed').map((m) => m.id));
    const knownSites = new Set([...auth.knownSites, ...members.map((m) => m.id)].filter((id) => !removed.has(id)));
    const ok = verifyPeerRequest({ ...auth, knownSites }, req.headers[peerHeader], env.clock.wallMs(), req.method, path);
    if (!ok.ok) {
      log.warn({ path, reason: ok.reason }, 'refused peer request');
      return problem(401, 'unauthorized', `peer authentication failed: ${ok.reason}`);
    }
    if (req.method !== 'POST' || path !== '/v1/peer/topology') return problem(404, 'not-found', `a witness serves only POST /v1/peer/topology, not ${req.method} ${path}`);
    let msg: VoterRequest;
    try {
      msg = decodeMessage<VoterRequest>(req.body);
    } catch {
      return problem(400, 'bad-request', 'malformed topology request');
    }
    if (!isVoterRequest(msg)) return problem(400, 'bad-request', 'malformed topology request');
    return msgpackResponse(200, await voter.handle(msg));
  };
}
