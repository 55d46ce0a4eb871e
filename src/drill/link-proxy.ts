// A link fault proxy: a real TCP proxy for one directed link (A reaches B through it: A's requests
// and B's answers on those connections). It can cut the link (refuse new connections, reset open
// ones), stall it (connections stay open, no byte moves: a black hole, as a gray failure looks from
// outside), add latency and jitter, limit its bandwidth, and reset open connections; otherwise it
// passes traffic untouched. Drills route every site's peer traffic through one proxy per directed
// link (TANDEM_PEER_URLS) and the router's traffic to each site through one more (the site's `app`).
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { realRandom, realTimers } from '../platform/real/real-env.js';
import type { Random } from '../platform/env.js';

export interface LinkFaults {
  blocked: boolean;
  stalled: boolean;
  latencyMs: number;
  jitterMs: number;
  /** bytes per second in each direction; 0: unlimited */
  bandwidthBytesPerS: number;
}

const noFaults = (): LinkFaults => ({ blocked: false, stalled: false, latencyMs: 0, jitterMs: 0, bandwidthBytesPerS: 0 });

/** Bytes a stalled or slow link holds per direction before it stops reading its source (TCP backpressure). */
const heldBytesMax = 1 << 20;

interface Pipe {
  from: Socket;
  to: Socket;
  /** when the last chunk queued on this direction leaves (ms, performance.now) */
  releaseAt: number;
  heldBytes: number;
}

export class LinkProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly pipes = new Set<Pipe>();
  private faults: LinkFaults = noFaults();
  /** the base latency of this link (its share of the RTT matrix), kept across heals */
  private baseLatencyMs = 0;
  private baseJitterMs = 0;
  port = 0;
  bytesRelayed = 0;
  /** the target process is down (killed, restarting): the proxy refuses connections as its host would */
  private targetIsDown = false;
  private listening = false;

  constructor(
    readonly name: string,
    private readonly targetHost: string,
    private readonly targetPort: number,
    private readonly random: Random,
  ) {}

  async start(port = 0): Promise<number> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
    this.listening = true;
    return this.port;
  }

  /**
   * Refusing connections is closing the listening socket: a client then gets ECONNREFUSED, as from
   * a dead host, and knows nothing was sent (an accepted connection reset later reads as unknown).
   */
  private setListening(on: boolean): void {
    if (on === this.listening || this.server === undefined) return;
    this.listening = on;
    if (on) this.server.listen(this.port, '127.0.0.1');
    else this.server.close();
  }

  /**
   * The target process died (open connections reset, as its host's kernel does) or is shutting
   * down cleanly (`resetOpen` false: it answers what it has, then closes them itself).
   */
  targetDown(resetOpen = true): void {
    this.targetIsDown = true;
    this.setListening(false);
    if (resetOpen) this.reset();
  }

  targetUp(): void {
    this.targetIsDown = false;
    if (!this.faults.blocked) this.setListening(true);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get state(): Readonly<LinkFaults> {
    return this.faults;
  }

  /** Cuts the link: open connections are reset, new ones are refused until heal(). */
  block(): void {
    this.faults.blocked = true;
    this.setListening(false);
    this.reset();
  }

  /** Black hole: connections are accepted and kept, but no byte moves until heal(). */
  stall(): void {
    this.faults.stalled = true;
  }

  /** Resets every open connection once (new ones are accepted). */
  reset(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.pipes.clear();
  }

  /** The link's normal latency (half the RTT of the sites it joins), kept by heal(). */
  setBaseLatency(latencyMs: number, jitterMs: number): void {
    this.baseLatencyMs = latencyMs;
    this.baseJitterMs = jitterMs;
    this.faults.latencyMs = latencyMs;
    this.faults.jitterMs = jitterMs;
  }

  setLatency(latencyMs: number, jitterMs = 0): void {
    this.faults.latencyMs = latencyMs;
    this.faults.jitterMs = jitterMs;
  }

  setBandwidth(bytesPerS: number): void {
    this.faults.bandwidthBytesPerS = bytesPerS;
  }

  heal(): void {
    const wasStalled = this.faults.stalled;
    this.faults = { ...noFaults(), latencyMs: this.baseLatencyMs, jitterMs: this.baseJitterMs };
    if (!this.targetIsDown) this.setListening(true);
    if (wasStalled) for (const p of this.pipes) this.flushHeld(p);
  }

  async stop(): Promise<void> {
    this.reset();
    const server = this.server;
    if (server === undefined || !this.listening) return;
    this.listening = false;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (this.faults.blocked) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: this.targetHost, port: this.targetPort });
    this.sockets.add(client);
    this.sockets.add(upstream);
    const out: Pipe = { from: client, to: upstream, releaseAt: 0, heldBytes: 0 };
    const back: Pipe = { from: upstream, to: client, releaseAt: 0, heldBytes: 0 };
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
      this.pipes.delete(out);
      this.pipes.delete(back);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    this.pipes.add(out);
    this.pipes.add(back);
    this.relay(out);
    this.relay(back);
  }

  /** Chunks held while the link is stalled, per pipe, released in order by heal(). */
  private readonly held = new Map<Pipe, Buffer[]>();

  private flushHeld(p: Pipe): void {
    const chunks = this.held.get(p) ?? [];
    this.held.delete(p);
    p.heldBytes = 0;
    for (const c of chunks) this.forward(p, c);
    if (p.from.isPaused()) p.from.resume();
  }

  /** Copies bytes from one socket to the other, delayed per chunk by latency and bandwidth (order kept). */
  private relay(p: Pipe): void {
    p.from.on('data', (chunk: Buffer) => {
      if (this.faults.stalled) {
        const list = this.held.get(p) ?? [];
        list.push(chunk);
        this.held.set(p, list);
        p.heldBytes += chunk.byteLength;
        if (p.heldBytes > heldBytesMax) p.from.pause();
        return;
      }
      this.forward(p, chunk);
    });
  }

  private forward(p: Pipe, chunk: Buffer): void {
    const { latencyMs, jitterMs, bandwidthBytesPerS } = this.faults;
    this.bytesRelayed += chunk.byteLength;
    if (latencyMs === 0 && jitterMs === 0 && bandwidthBytesPerS === 0 && p.releaseAt === 0) {
      p.to.write(chunk);
      return;
    }
    const now = performance.now();
    const transmitMs = bandwidthBytesPerS > 0 ? (chunk.byteLength * 1000) / bandwidthBytesPerS : 0;
    const delay = latencyMs + (jitterMs > 0 ? this.random.next() * jitterMs : 0);
    // latency delays every chunk; bandwidth serialises them: a chunk leaves after the one before it
    p.releaseAt = Math.max(p.releaseAt + transmitMs, now + delay + transmitMs);
    const release = p.releaseAt;
    p.heldBytes += chunk.byteLength;
    if (p.heldBytes > heldBytesMax) p.from.pause();
    realTimers.after(release - now, () => {
      p.heldBytes -= chunk.byteLength;
      if (!p.to.destroyed) p.to.write(chunk);
      if (p.heldBytes <= heldBytesMax / 2 && p.from.isPaused() && !this.faults.stalled) p.from.resume();
      if (p.releaseAt <= performance.now() && latencyMs === 0 && jitterMs === 0 && bandwidthBytesPerS === 0) p.releaseAt = 0;
    });
  }
}

/**
 * One proxy per directed link between the sites of a cluster, and one from the router to each
 * site (`router->ID`): the peer URLs for each site, and the URL the router uses for each site.
 */
export class LinkMesh {
  readonly links = new Map<string, LinkProxy>();

  /** `firstPort`: proxies listen on firstPort, firstPort+1, … (default: ports the OS picks). */
  static async create(sites: { id: string; url: string }[], options: { random?: Random; withRouter?: boolean; firstPort?: number } = {}): Promise<LinkMesh> {
    const mesh = new LinkMesh();
    let next = options.firstPort;
    const froms = [...sites.map((s) => s.id), ...(options.withRouter ? ['router'] : [])];
    for (const from of froms)
      for (const to of sites) {
        if (from === to.id) continue;
        const target = new URL(to.url);
        const proxy = new LinkProxy(`${from}->${to.id}`, target.hostname, Number(target.port), options.random ?? realRandom);
        await proxy.start(next === undefined ? 0 : next++);
        mesh.links.set(`${from}->${to.id}`, proxy);
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

  /** The links into and out of `site` (peer links, and the router's link to it). */
  linksOf(site: string): LinkProxy[] {
    return [...this.links].filter(([name]) => name.startsWith(`${site}->`) || name.endsWith(`->${site}`)).map(([, p]) => p);
  }

  /** The links into `site` refuse connections while its process is down (or restarting). */
  targetDown(site: string, resetOpen = true): void {
    for (const [name, p] of this.links) if (name.endsWith(`->${site}`)) p.targetDown(resetOpen);
  }

  targetUp(site: string): void {
    for (const [name, p] of this.links) if (name.endsWith(`->${site}`)) p.targetUp();
  }

  /** Cuts `site` from every other site (and from the router), both directions. */
  isolate(site: string): void {
    for (const p of this.linksOf(site)) p.block();
  }

  healAll(): void {
    for (const proxy of this.links.values()) proxy.heal();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.links.values()].map((p) => p.stop()));
  }
}
