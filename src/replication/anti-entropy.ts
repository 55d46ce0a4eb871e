// Anti-entropy: a safety net under the log. Per-table digests over the canonical content of live
// items are compared with each peer whose vector equals ours (then contents must be equal); where
// they differ, per-bucket digests narrow it down and the differing buckets' item states are fetched
// and joined. Repair never advances the vector, never logs, and joining cannot resurrect what the
// local item has seen removed (entries covered by its context are dropped by the join).
//
// Every digest, bucket list and page of items is read together with the vector it reflects (in one
// turn, from memory), and a round goes on only while both sites stay at the vector they agreed on:
// a write landing between two reads would otherwise look like a difference, and the round would
// join states the feed was about to deliver. So with no fault, a round repairs nothing; a repair
// means a real divergence (a bug), and each one is logged with its key and versions.
import { vectorsEqual, type VersionVector } from '../core/vector.js';
import type { ItemState } from '../core/item.js';
import type { Env, IncomingRequest, TransportResponse } from '../platform/env.js';
import { Periodic } from '../platform/periodic.js';
import type { PeerAuthConfig } from './auth.js';
import { decodeMessage, protocolVersion } from './protocol.js';
import { callPeer } from './peer-call.js';
import type { ReplicaNode } from './replica-node.js';
import { msgpackResponse, problem } from './feed-server.js';

interface DigestsReply {
  v: number;
  /** what the digests cover (Store.committedVector, read with them) */
  vector: VersionVector;
  digests: Record<string, string>;
}

interface BucketsReply {
  buckets: string[];
  vector: VersionVector;
}

interface BucketItemsRequest {
  table: string;
  buckets: number[];
  after?: string;
  limit: number;
}

interface BucketItemsReply {
  items: { key: string; state: ItemState }[];
  more: boolean;
  /** what the items were read at */
  vector?: VersionVector;
}

/** The sites moved on during a round: not a divergence; the next round looks again. */
class MovedOn extends Error {}

const bucketPageMax = 500;

export interface AntiEntropyOptions {
  env: Env;
  node: ReplicaNode;
  auth: PeerAuthConfig;
  peerUrls: Record<string, string>;
  intervalMs: number;
  onRepaired?: (n: number) => void;
}

export class AntiEntropy {
  readonly id = 'anti-entropy';
  private readonly schedule: Periodic;

  constructor(private readonly options: AntiEntropyOptions) {
    this.schedule = new Periodic(options.env.timers, options.env.log, this.id, options.intervalMs, () => this.compareWithAll());
  }

  run(): void {
    this.schedule.start();
  }

  stop(): Promise<void> {
    return this.schedule.stop();
  }

  /** One round with every peer; returns the number of items repaired. */
  async compareWithAll(): Promise<number> {
    let repaired = 0;
    for (const peer of Object.keys(this.options.peerUrls)) {
      try {
        repaired += await this.compareWith(peer);
      } catch (e) {
        this.options.env.log.debug({ peer, err: (e as Error).message }, 'anti-entropy round with peer failed');
      }
    }
    return repaired;
  }

  async compareWith(peer: string): Promise<number> {
    const { node } = this.options;
    const store = node.store;
    const theirs = await this.call<DigestsReply>(peer, 'GET', '/v1/peer/digests');
    // vector and digests read in the same turn: they describe the same content
    const agreed = store.committedVector();
    const mine = await store.digests();
    if (!vectorsEqual(theirs.vector, agreed)) return 0;
    const stillAt = (vector: VersionVector | undefined, what: string) => {
      if (vector !== undefined && !vectorsEqual(vector, agreed)) throw new MovedOn(`${what} moved on`);
    };
    let repaired = 0;
    try {
      for (const table of new Set([...Object.keys(mine), ...Object.keys(theirs.digests)])) {
        if ((mine[table] ?? zero) === (theirs.digests[table] ?? zero)) continue;
        const reply = await this.call<BucketsReply | string[]>(peer, 'POST', '/v1/peer/buckets', { table, withVector: true });
        // a peer of the previous protocol answers the bare list, without its vector
        const theirBuckets = Array.isArray(reply) ? reply : reply.buckets;
        stillAt(Array.isArray(reply) ? undefined : reply.vector, peer);
        stillAt(store.committedVector(), node.siteId);
        const myBuckets = await store.bucketDigests(table);
        const differing = myBuckets.flatMap((d, i) => (d !== theirBuckets[i] ? [i] : []));
        let after: string | undefined;
        for (let page = 0; page < 10_000; page++) {
          const req: BucketItemsRequest = { table, buckets: differing, limit: bucketPageMax, ...(after !== undefined ? { after } : {}) };
          const items = await this.call<BucketItemsReply>(peer, 'POST', '/v1/peer/bucket-items', req);
          stillAt(items.vector, peer);
          repaired += await node.repairItems(
            items.items.map((i) => ({ table, key: i.key, state: i.state })),
            { reportAs: `anti-entropy with ${peer}` },
          );
          if (!items.more || items.items.length === 0) break;
          after = items.items[items.items.length - 1]!.key;
        }
      }
    } catch (e) {
      if (!(e instanceof MovedOn)) throw e;
      this.options.env.log.debug({ peer, why: e.message }, 'anti-entropy round ended early: writes arrived meanwhile');
    }
    if (repaired > 0) {
      this.options.onRepaired?.(repaired);
      this.options.env.log.warn({ peer, repaired }, 'anti-entropy repaired items: the sites had diverged (see the repaired keys above)');
    }
    return repaired;
  }

  routes(): Record<string, (req: IncomingRequest) => Promise<TransportResponse>> {
    const { node } = this.options;
    return {
      'GET /v1/peer/digests': async () => {
        const vector = node.store.committedVector();
        return msgpackResponse(200, { v: protocolVersion, vector, digests: await node.store.digests() } satisfies DigestsReply);
      },
      'POST /v1/peer/buckets': async (req) => {
        const { table, withVector } = decodeMessage<{ table: string; withVector?: boolean }>(req.body);
        if (typeof table !== 'string') return problem(400, 'bad-request', 'table expected');
        const vector = node.store.committedVector();
        const buckets = await node.store.bucketDigests(table);
        // a peer of the previous protocol asks without withVector and reads the bare list
        return msgpackResponse(200, withVector === true ? ({ vector, buckets } satisfies BucketsReply) : buckets);
      },
      'POST /v1/peer/bucket-items': async (req) => {
        const r = decodeMessage<BucketItemsRequest>(req.body);
        if (typeof r?.table !== 'string' || !Array.isArray(r.buckets)) return problem(400, 'bad-request', 'table and buckets expected');
        const limit = Math.min(Math.max(1, Number(r.limit) || bucketPageMax), bucketPageMax);
        // the items are read in this turn (the wait for durability comes after): the same content as the vector
        const vector = node.store.committedVector();
        const items = await node.store.itemsInBuckets(r.table, r.buckets.map(Number), r.after, limit + 1);
        return msgpackResponse(200, {
          items: items.slice(0, limit).map((i) => ({ key: i.key, state: i.state })),
          more: items.length > limit,
          vector,
        } satisfies BucketItemsReply);
      },
    };
  }

  private call<T>(peer: string, method: string, path: string, body?: unknown): Promise<T> {
    const { env, node, auth, peerUrls } = this.options;
    return callPeer<T>({ env, auth, from: node.siteId, peer, peerUrl: peerUrls[peer]!, method, path, ...(body !== undefined ? { body } : {}), replyBytesMax: 64 * 1024 * 1024 });
  }
}

const zero = '0'.repeat(32);
