// The stored (and replicated) form of a log entry: MessagePack of the LogEntry object, spliced from
// item states encoded once (they are encoded for the items table anyway). Decoding it gives the
// LogEntry back; a receiver logs the bytes it received as they are (msgpack-raw.ts).
import { decode } from '@msgpack/msgpack';
import { RawWriter } from '../platform/msgpack-raw.js';
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

export function decodeLogEntry(bytes: Uint8Array): LogEntry {
  return decode(bytes) as LogEntry;
}
