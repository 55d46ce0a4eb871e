// Runs a witness as a process (`tandem witness`): a voter with no data, reached by the sites at its
// configured URL, its promises and accepted records in `<data-dir>/<id>/topology.db`. Shuts down
// cleanly on SIGTERM: stop accepting, finish what is in flight, close the state file.
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Fastify from 'fastify';
import type { ClusterConfig } from '../config/schema.js';
import { realEnv, realLogger } from '../platform/real/real-env.js';
import { Voter } from '../topology/paxos.js';
import { genesisTopology } from '../topology/record.js';
import { SqliteVoterStorage } from '../topology/voter-storage.js';
import { witnessHandler } from '../topology/witness.js';
import { limits } from '../limits.js';

export interface RunningWitness {
  url: string;
  stop(): Promise<void>;
}

export async function startWitness(options: { config: ClusterConfig; id: string; dataDir: string }): Promise<RunningWitness> {
  const { config, id } = options;
  const w = config.witnesses.find((x) => x.id === id);
  if (w === undefined) throw new Error(`witness ${id} is not in the config (witnesses: ${config.witnesses.map((x) => x.id).join(', ') || 'none'})`);
  const env = realEnv(realLogger({ witness: id }));
  const storage = new SqliteVoterStorage(join(options.dataDir, id, 'topology.db'));
  const t = config.topology;
  const voter = new Voter({
    id,
    storage,
    genesis: genesisTopology(config),
    monotonicMs: () => env.clock.monotonicMs(),
    restartQuietMs: () => Math.ceil((t.leaseMs * (1 + t.driftRateMax)) / (1 - t.driftRateMax)),
  });
  const handler = witnessHandler({ env, voter, auth: { cluster: config.cluster, secret: config.secret, knownSites: new Set(config.sites.map((s) => s.id)) } });
  const app = Fastify({ logger: false, bodyLimit: 16 << 20, forceCloseConnections: false });
  app.addContentTypeParser('application/msgpack', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.get('/health', async () => ({ status: 'ok', witness: id }));
  app.get('/v1/topology', async () => ({ epoch: voter.decided.epoch, members: voter.decided.members, owners: voter.decided.owners, homes: voter.decided.homes }));
  app.all('/v1/peer/*', async (req, reply) => {
    const ac = new AbortController();
    reply.raw.on('close', () => ac.abort());
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    const res = await handler({ method: req.method, path: req.url, headers, body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0), signal: ac.signal });
    reply.code(res.status);
    for (const [k, v] of Object.entries(res.headers)) reply.header(k, v);
    return reply.send(Readable.from(res.body));
  });
  const url = new URL(w.url);
  await app.listen({ host: url.hostname, port: Number(url.port || 80) });
  let stopping: Promise<void> | undefined;
  return {
    url: w.url,
    stop() {
      stopping ??= (async () => {
        await Promise.race([app.close(), env.timers.sleep(limits.shutdownDrainMsMax)]);
        storage.close();
        await env.close();
      })();
      return stopping;
    },
  };
}
