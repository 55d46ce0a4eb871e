// The drill's link fault proxies in their own process (`node dist/drill/proxy-process.js SPEC`),
// so that neither the drill's own work nor the load generator shares an event loop with the bytes
// of every routed request and replication stream. It prints `{"ready": {link: url}}` once every
// proxy listens, then applies one JSON command per stdin line and answers each on stdout:
// `{"id", "op", "links": [...], ...args}` → `{"id", "ok": true}` or `{"id", "error"}`.
// It ends when stdin closes (the drill ended, or died).
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { SeededRandom } from '../platform/sim/random.js';
import { LinkMesh, type LinkProxy } from './link-proxy.js';

export interface ProxySpec {
  sites: { id: string; url: string }[];
  seed: number;
  firstPort: number;
}

export type ProxyCommand =
  | { id: number; op: 'block' | 'stall' | 'reset' | 'heal' | 'target-up'; links: string[] }
  | { id: number; op: 'target-down'; links: string[]; resetOpen: boolean }
  | { id: number; op: 'latency'; links: string[]; latencyMs: number; jitterMs: number }
  | { id: number; op: 'bandwidth'; links: string[]; bytesPerS: number };

function apply(p: LinkProxy, c: ProxyCommand): void {
  switch (c.op) {
    case 'block':
      return p.block();
    case 'stall':
      return p.stall();
    case 'reset':
      return p.reset();
    case 'heal':
      return p.heal();
    case 'target-up':
      return p.targetUp();
    case 'target-down':
      return p.targetDown(c.resetOpen);
    case 'latency':
      return p.setLatency(c.latencyMs, c.jitterMs);
    case 'bandwidth':
      return p.setBandwidth(c.bytesPerS);
  }
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as ProxySpec;
  const mesh = await LinkMesh.create(spec.sites, { random: new SeededRandom(spec.seed).fork('links'), withRouter: true, firstPort: spec.firstPort });
  const urls: Record<string, string> = {};
  for (const [name, p] of mesh.links) urls[name] = p.url;
  process.stdout.write(`${JSON.stringify({ ready: urls })}\n`);
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    let command: ProxyCommand;
    try {
      command = JSON.parse(line) as ProxyCommand;
    } catch {
      process.stdout.write(`${JSON.stringify({ id: -1, error: `not a JSON command: ${line.slice(0, 200)}` })}\n`);
      continue;
    }
    try {
      for (const name of command.links) {
        const p = mesh.links.get(name);
        if (p === undefined) throw new Error(`no link ${name}`);
        apply(p, command);
      }
      process.stdout.write(`${JSON.stringify({ id: command.id, ok: true })}\n`);
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ id: command.id, error: (e as Error).message })}\n`);
    }
  }
  await mesh.stop();
}

process.on('SIGTERM', () => process.stdin.destroy());
main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`link proxies: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
