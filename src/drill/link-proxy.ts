// A link fault proxy: a real TCP proxy for one directed link between two sites (A reaches B
// through it). It can partition the link (refuse new connections, reset open ones), add latency
// and jitter to every chunk, and pass traffic untouched otherwise. Drills and integration tests
// route every site's peer traffic through one proxy per link (TANDEM_PEER_URLS).
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { realRandom, realTimers } from '../platform/real/real-env.js';

export interface LinkFaults {
  blocked: boolean;
  latencyMs: number;
  jitterMs: number;
}

export class LinkProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private faults: LinkFaults = { blocked: false, latencyMs: 0, jitterMs: 0 };
  port = 0;

  constructor(
    readonly name: string,
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async start(port = 0): Promise<number> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
    return this.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Cuts the link: open connections are reset, new ones are refused until heal(). */
  block(): void {
    this.faults.blocked = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  heal(): void {
    this.faults = { blocked: false, latencyMs: 0, jitterMs: 0 };
  }

  setLatency(latencyMs: number, jitterMs = 0): void {
    this.faults.latencyMs = latencyMs;
    this.faults.jitterMs = jitterMs;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(client: Socket): void {
    if (this.faults.blocked) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: this.targetHost, port: this.targetPort });
    this.sockets.add(client);
    this.sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    this.relay(client, upstream);
    this.relay(upstream, client);
  }

  /** Copies bytes from one socket to the other, delayed per chunk while latency is set (order kept). */
  private relay(from: Socket, to: Socket): void {
    let releaseAt = 0;
    from.on('data', (chunk: Buffer) => {
      const { latencyMs, jitterMs } = this.faults;
      if (latencyMs === 0 && jitterMs === 0) {
        to.write(chunk);
        return;
      }
      const now = performance.now();
      const delay = latencyMs + (jitterMs > 0 ? realRandom.next() * jitterMs : 0);
      releaseAt = Math.max(releaseAt, now + delay);
      realTimers.after(releaseAt - now, () => {
        if (!to.destroyed) to.write(chunk);
      });
    });
  }
}

/** One proxy per directed link between the sites of a cluster, and the peer URLs for each site. */
export class LinkMesh {
  readonly links = new Map<string, LinkProxy>();

  static async create(sites: { id: string; url: string }[]): Promise<LinkMesh> {
    const mesh = new LinkMesh();
    for (const from of sites)
      for (const to of sites) {
        if (from.id === to.id) continue;
        const target = new URL(to.url);
        const proxy = new LinkProxy(`${from.id}->${to.id}`, target.hostname, Number(target.port));
        await proxy.start();
        mesh.links.set(`${from.id}->${to.id}`, proxy);
      }
    return mesh;
  }

  link(from: string, to: string): LinkProxy {
    const l = this.links.get(`${from}->${to}`);
    if (!l) throw new Error(`no link ${from}->${to}`);
    return l;
  }

  /** TANDEM_PEER_URLS for one site: how it reaches each peer. */
  peerUrlsFor(site: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, proxy] of this.links) {
      const [from, to] = name.split('->') as [string, string];
      if (from === site) out[to] = proxy.url;
    }
    return out;
  }

  /** Cuts `site` from every other site, both directions. */
  isolate(site: string): void {
    for (const [name, proxy] of this.links) if (name.startsWith(`${site}->`) || name.endsWith(`->${site}`)) proxy.block();
  }

  healAll(): void {
    for (const proxy of this.links.values()) proxy.heal();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.links.values()].map((p) => p.stop()));
  }
}
