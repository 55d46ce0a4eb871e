// The stored (and replicated) form of a log entry: MessagePack of the LogEntry object, spliced from
// item states encoded once (they are encoded for the items table anyway). Decoding it gives the
// LogEntry back; a receiver logs the bytes it received as they are (msgpack-raw.ts).
import { decode } from '@msgpack/msgpack';
import { containerAt, RawWriter, valueEnd } from '../platform/msgpack-raw.js';
import type { LogEntry } from './types.js';

export function encodeLogEntry(
  head: Pick<LogEntry, 'origin' | 'seq' | 'hlc' | 'awaitsAck'>,
  items: { table: string; key: string; state: Uint8Array }[],
): Uint8Array {
  const w = new RawWriter().map(head.awaitsAck ? 5 : 4);
  w.str('origin').str(head.origin).str('seq').uint(head.seq).str('hlc').str(head.hlc);
  w.str('items').array(items.length);
  for (const it of items) w.map(3).str('table').str(it.table).str('key').str(it.key).str('state').raw(it.state);
  if (head.awaitsAck) w.str('awaitsAck').true();
  return w.finish();
}

const itemsKey = Buffer.from([0xa5, ...Buffer.from('items')]);
const stateKey = Buffer.from([0xa5, ...Buffer.from('state')]);

function keyIs(bytes: Uint8Array, at: number, end: number, key: Buffer): boolean {
  return end - at === key.byteLength && key.equals(bytes.subarray(at, end));
}

/**
 * The encoded state of each item of a stored or received log entry, in order: views into `bytes`,
 * each the MessagePack of `decodeLogEntry(bytes).items[i].state`. Throws if `bytes` is not an entry.
 */
export function logEntryStateBytes(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const entry = containerAt(bytes, 0, 'map');
  let at = entry.body;
  for (let f = 0; f < entry.size; f++) {
    const keyEnd = valueEnd(bytes, at);
    const isItems = keyIs(bytes, at, keyEnd, itemsKey);
    at = keyEnd;
    if (!isItems) {
      at = valueEnd(bytes, at);
      continue;
    }
    const items = containerAt(bytes, at, 'array');
    at = items.body;
    for (let i = 0; i < items.size; i++) {
      const item = containerAt(bytes, at, 'map');
      at = item.body;
      let state: Uint8Array | undefined;
      for (let g = 0; g < item.size; g++) {
        const kEnd = valueEnd(bytes, at);
        const isState = keyIs(bytes, at, kEnd, stateKey);
        const vEnd = valueEnd(bytes, kEnd);
        if (isState) state = bytes.subarray(kEnd, vEnd);
        at = vEnd;
      }
      if (state === undefined) throw new Error('log entry item without a state');
      out.push(state);
    }
  }
  return out;
}

export function decodeLogEntry(bytes: Uint8Array): LogEntry {
  return decode(bytes) as LogEntry;
}
