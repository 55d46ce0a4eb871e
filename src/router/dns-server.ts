// The router's authoritative DNS server over UDP and TCP on the same port. Decoding and answering
// are in dns-answer.ts; this file only moves bytes. A packet that does not decode gets FORMERR (if
// it has a header) or is dropped: nothing a client sends can crash the server.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server as TcpServer, type Socket } from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet } from 'dns-packet';
import type { Env, TimerHandle } from '../platform/env.js';
import { ednsPayloadBytesMax, formErrFor, truncated, udpPlainBytesMax } from './dns-answer.js';

/** A TCP connection idle this long is closed (RFC 7766 suggests seconds). */
const tcpIdleMs = 10_000;
const tcpConnectionsMax = 256;
/** A TCP message is at most 65535 bytes; a connection buffers at most one plus its length prefix. */
const tcpBufferBytesMax = 65_535 + 2;

export type DnsAnswerer = (query: DecodedPacket, clientIp: string | undefined) => Packet;

export class DnsServer {
  private udp: UdpSocket | undefined;
  private tcp: TcpServer | undefined;
  private readonly connections = new Set<Socket>();
  address: { host: string; port: number } | undefined;

  constructor(
    private readonly env: Env,
    private readonly answer: DnsAnswerer,
  ) {}

  /** Binds UDP and TCP on host:port (port 0: one free port for both). */
  async start(host: string, port: number): Promise<{ host: string; port: number }> {
    for (let attempt = 0; ; attempt++) {
      const udp = await this.bindUdp(host, port);
      const udpPort = udp.address().port;
      try {
        this.tcp = await this.listenTcp(host, udpPort);
        this.udp = udp;
        this.address = { host, port: udpPort };
        return this.address;
      } catch (err) {
        udp.close();
        // With port 0 the UDP port may be taken for TCP: try another one.
        if (port !== 0 || attempt >= 10) throw err;
      }
    }
  }

  async stop(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = undefined;
    this.tcp = undefined;
    for (const socket of this.connections) socket.destroy();
    this.connections.clear();
    await Promise.all([
      udp === undefined ? undefined : new Promise<void>((resolve) => udp.close(() => resolve())),
      tcp === undefined ? undefined : new Promise<void>((resolve) => tcp.close(() => resolve())),
    ]);
  }

  /** Decodes, answers and encodes one message; undefined when it must be dropped. */
  respond(raw: Buffer, clientIp: string | undefined, viaUdp: boolean): Buffer | undefined {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(raw);
    } catch {
      return formErrFor(raw);
    }
    if (query.type === 'response') return undefined;
    try {
      const response = this.answer(query, clientIp);
      let out = dnsPacket.encode(response);
      if (viaUdp) {
        const opt = (query.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
        const limit = opt === undefined ? udpPlainBytesMax : Math.max(udpPlainBytesMax, Math.min(opt.udpPayloadSize ?? 0, ednsPayloadBytesMax));
        if (out.length > limit) out = dnsPacket.encode(truncated(response));
      }
      return out;
    } catch (err) {
      this.env.log.warn({ err: (err as Error).message }, 'dns: could not answer a query');
      return formErrFor(raw);
    }
  }

  private bindUdp(host: string, port: number): Promise<UdpSocket> {
    return new Promise((resolve, reject) => {
      const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
      socket.once('error', reject);
      socket.bind(port, host, () => {
        socket.off('error', reject);
        socket.on('error', (err) => this.env.log.warn({ err: err.message }, 'dns: udp socket error'));
        socket.on('message', (msg, rinfo) => {
          const out = this.respond(msg, rinfo.address, true);
          if (out !== undefined) socket.send(out, rinfo.port, rinfo.address);
        });
        resolve(socket);
      });
    });
  }

  private listenTcp(host: string, port: number): Promise<TcpServer> {
    return new Promise((resolve, reject) => {
      const server = createServer((socket) => this.serveTcp(socket));
      server.maxConnections = tcpConnectionsMax;
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        server.on('error', (err) => this.env.log.warn({ err: err.message }, 'dns: tcp server error'));
        resolve(server);
      });
    });
  }

  private serveTcp(socket: Socket): void {
    this.connections.add(socket);
    let buffered: Buffer = Buffer.alloc(0);
    let idle: TimerHandle | undefined;
    const armIdle = () => {
      idle?.cancel();
      idle = this.env.timers.after(tcpIdleMs, () => socket.destroy());
    };
    armIdle();
    socket.on('data', (chunk: Buffer) => {
      armIdle();
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      if (buffered.length > tcpBufferBytesMax + chunk.length) {
        socket.destroy();
        return;
      }
      while (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) break;
        const message = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
        const out = this.respond(Buffer.from(message), socket.remoteAddress, false);
        if (out === undefined) continue;
        const prefix = Buffer.alloc(2);
        prefix.writeUInt16BE(out.length, 0);
        socket.write(Buffer.concat([prefix, out]));
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      idle?.cancel();
      this.connections.delete(socket);
    });
  }
}
