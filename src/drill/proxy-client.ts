// The drill's handle on its link fault proxies, which run in their own process (proxy-process.ts):
// starts it, knows every link's URL, and sends it fault commands, each answered before it resolves.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { realTimers } from '../platform/real/real-env.js';
import type { ProxyCommand, ProxySpec } from './proxy-process.js';
import { spawnNiced } from './spawn-niced.js';

const proxyEntry = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/drill/proxy-process.js');
const commandTimeoutMs = 5000;

type CommandBody = ProxyCommand extends infer C ? (C extends ProxyCommand ? Omit<C, 'id'> : never) : never;

export class RemoteLinkMesh {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private exited = false;

  private constructor(
    private readonly child: ChildProcess,
    /** link name (`from->to`) → URL of its proxy */
    readonly urls: Record<string, string>,
  ) {}

  static async start(spec: ProxySpec, specPath: string): Promise<RemoteLinkMesh> {
    writeFileSync(specPath, JSON.stringify(spec, null, 2));
    // every routed request and replication stream crosses it: it must not be what is slow
    const child = spawnNiced(-5, [proxyEntry, specPath]);
    const errors: string[] = [];
    child.stderr!.on('data', (c: Buffer) => errors.push(c.toString()));
    let mesh: RemoteLinkMesh | undefined;
    let buffered = '';
    const ready = new Promise<Record<string, string>>((resolveReady, rejectReady) => {
      child.once('exit', (code) => {
        if (mesh) mesh.onExit(code);
        rejectReady(new Error(`the link proxies exited (${code}) before they were ready: ${errors.join('').slice(0, 2000)}`));
      });
      child.stdout!.on('data', (c: Buffer) => {
        buffered += c.toString();
        for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
          const line = buffered.slice(0, i);
          buffered = buffered.slice(i + 1);
          const msg = JSON.parse(line) as { ready?: Record<string, string>; id?: number; ok?: boolean; error?: string };
          if (msg.ready) resolveReady(msg.ready);
          else if (msg.id !== undefined) mesh?.answered(msg.id, msg.error);
        }
      });
    });
    const timeout = realTimers.after(30_000, () => child.kill('SIGKILL'));
    try {
      mesh = new RemoteLinkMesh(child, await ready);
    } finally {
      timeout.cancel();
    }
    return mesh;
  }

  private answered(id: number, error: string | undefined): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    if (error === undefined) w.resolve();
    else w.reject(new Error(`link proxies: ${error}`));
  }

  private onExit(code: number | null): void {
    this.exited = true;
    for (const w of this.waiting.values()) w.reject(new Error(`the link proxies exited (${code})`));
    this.waiting.clear();
  }

  get names(): string[] {
    return Object.keys(this.urls);
  }

  url(from: string, to: string): string {
    const u = this.urls[`${from}->${to}`];
    if (u === undefined) throw new Error(`no link ${from}->${to}`);
    return u;
  }

  /** TANDEM_PEER_URLS for one site: how it reaches each peer. */
  peerUrlsFor(site: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, url] of Object.entries(this.urls)) {
      const [from, to] = name.split('->') as [string, string];
      if (from === site) out[to] = url;
    }
    return out;
  }

  /** The links into and out of `site` (its peer links and the router's link to it). */
  linksOf(site: string, options: { router: boolean } = { router: true }): string[] {
    return this.names.filter((n) => (n.startsWith(`${site}->`) || n.endsWith(`->${site}`)) && (options.router || !n.startsWith('router->')));
  }

  /** The links into `site` (from its peers and the router). */
  linksInto(site: string): string[] {
    return this.names.filter((n) => n.endsWith(`->${site}`));
  }

  command(body: CommandBody): Promise<void> {
    if (this.exited) return Promise.reject(new Error('the link proxies are not running'));
    const id = this.nextId++;
    return new Promise<void>((resolveCommand, rejectCommand) => {
      const timer = realTimers.after(commandTimeoutMs, () => {
        this.waiting.delete(id);
        rejectCommand(new Error(`link proxies: no answer to ${body.op} within ${commandTimeoutMs} ms`));
      });
      this.waiting.set(id, {
        resolve: () => {
          timer.cancel();
          resolveCommand();
        },
        reject: (e) => {
          timer.cancel();
          rejectCommand(e);
        },
      });
      this.child.stdin!.write(`${JSON.stringify({ ...body, id })}\n`);
    });
  }

  healAll(): Promise<void> {
    return this.command({ op: 'heal', links: this.names });
  }

  /** Closes its stdin: the proxies stop and the process exits. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin!.end();
    const timer = realTimers.after(5000, () => this.child.kill('SIGKILL'));
    await exited;
    timer.cancel();
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}
