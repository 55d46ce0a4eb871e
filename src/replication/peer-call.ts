// One small request/response exchange with a peer (anti-entropy digests and buckets, the origin
// check at start-up): signed, bounded in time and size, MessagePack both ways.
import { readBody, type Env } from '../platform/env.js';
import { limits } from '../limits.js';
import { peerHeader, signPeerRequest, type PeerAuthConfig } from './auth.js';
import { decodeMessage, encodeMessage } from './protocol.js';

export interface PeerCall {
  env: Env;
  auth: PeerAuthConfig;
  /** this site's id (the request is signed as it) */
  from: string;
  peer: string;
  peerUrl: string;
  method: string;
  path: string;
  body?: unknown;
  replyBytesMax: number;
  /** ends the call early (e.g. the caller is stopping) */
  signal?: AbortSignal;
}

/** The decoded body of the peer's 200; throws on any other answer, a timeout or an abort. */
export async function callPeer<T>(call: PeerCall): Promise<T> {
  const { env, method, path } = call;
  const ac = new AbortController();
  const timeout = env.timers.after(limits.peerRequestTimeoutMs, () => ac.abort(new Error(`${path} timed out`)));
  const abort = () => ac.abort(new Error('stopping'));
  call.signal?.addEventListener('abort', abort, { once: true });
  try {
    const res = await env.transport.request({
      method,
      url: `${call.peerUrl}${path}`,
      headers: { 'content-type': 'application/msgpack', [peerHeader]: signPeerRequest(call.auth, call.from, env.clock.wallMs(), method, path) },
      ...(call.body !== undefined ? { body: encodeMessage(call.body) } : {}),
      signal: ac.signal,
    });
    const bytes = await readBody(res.body, call.replyBytesMax);
    if (res.status !== 200) throw new Error(`peer ${call.peer} answered ${res.status} to ${path}`);
    return decodeMessage<T>(bytes);
  } finally {
    timeout.cancel();
    call.signal?.removeEventListener('abort', abort);
  }
}
