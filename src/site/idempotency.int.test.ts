// A real `tandem site` process takes counter increments, each under its own Idempotency-Key, and is
// killed with SIGKILL at a random moment. After a restart on the same data dir every key is sent
// again: an acknowledged one answers its first answer (Idempotent-Replayed: true), one whose
// outcome was unknown is either replayed or applied now; and every counter then equals the number
// of keys sent for it: each increment applied exactly once.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { demoConfig } from '../config/demo.js';
import { LocalCluster } from '../cluster/local-cluster.js';
import { freePortRange } from '../cluster/ports.js';

const seed = Number(process.env.SEED ?? Math.floor(Math.random() * 1e9));
let cluster: LocalCluster | undefined;
afterAll(async () => {
  await cluster?.stop(2_000);
});

interface Sent {
  counter: string;
  /** the first answer's body, when it came back */
  answer?: string;
}

describe('Idempotency-Key across kill -9', () => {
  it(`a repeat after a crash and restart answers the first answer, and nothing is written twice (seed ${seed})`, async () => {
    const basePort = await freePortRange(2);
    const config = demoConfig({ sites: 1, basePort });
    cluster = new LocalCluster({ config, dataDir: mkdtempSync(join(tmpdir(), 'tandem-idem-')), withRouter: false });
    await cluster.start();
    const url = config.sites[0]!.url;
    const increment = (counter: string, key: string) =>
      request(`${url}/v1/tables/counters/items/${counter}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ increment: { n: 1 } }),
      });
    const sent = new Map<string, Sent>();
    let stop = false;
    const writer = async (w: number) => {
      for (let n = 0; !stop; n++) {
        const key = `w${w}-${n}`;
        const entry: Sent = { counter: `c${w}` };
        sent.set(key, entry);
        try {
          const res = await increment(entry.counter, key);
          const body = await res.body.text();
          if (res.statusCode === 200) entry.answer = body;
        } catch {
          // the process died under us: this increment's outcome is unknown
        }
      }
    };
    const writers = Array.from({ length: 8 }, (_, i) => writer(i));
    await new Promise((r) => setTimeout(r, 300 + (seed % 1200)));
    await cluster.kill(config.sites[0]!.id, 'SIGKILL');
    stop = true;
    await Promise.all(writers);
    const acked = [...sent.values()].filter((s) => s.answer !== undefined).length;
    expect(acked, `seed ${seed}`).toBeGreaterThan(50);

    cluster.startSite(config.sites[0]!.id);
    await cluster.waitHealthy(20_000);
    const vectorOf = async () => ((await (await request(`${url}/v1/status`)).body.json()) as { vector: Record<string, number> }).vector;
    const wrong: string[] = [];
    for (const [key, s] of sent) {
      const res = await increment(s.counter, key);
      const body = await res.body.text();
      if (res.statusCode !== 200) wrong.push(`${key}: ${res.statusCode} ${body}`);
      else if (s.answer !== undefined && (body !== s.answer || res.headers['idempotent-replayed'] !== 'true')) wrong.push(`${key}: answered ${body}, first ${s.answer}`);
    }
    expect(wrong, `replay with SEED=${seed}`).toEqual([]);
    // every key now has its write: a second round of repeats writes nothing at all
    const vector = await vectorOf();
    for (const [key, s] of sent) {
      const res = await increment(s.counter, key);
      await res.body.dump();
      expect(res.headers['idempotent-replayed'], key).toBe('true');
    }
    expect(await vectorOf()).toEqual(vector);
    const perCounter = new Map<string, number>();
    for (const s of sent.values()) perCounter.set(s.counter, (perCounter.get(s.counter) ?? 0) + 1);
    for (const [counter, keys] of perCounter) {
      const res = await request(`${url}/v1/tables/counters/items/${counter}`);
      expect(((await res.body.json()) as { value: { n: number } }).value.n, `${counter}, seed ${seed}`).toBe(keys);
    }
  });
});
