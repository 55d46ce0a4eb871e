// The client's end of a simulated response body: chunks are pushed in as the network delivers them
// and read out by one consumer through the async iterator. Reads report back to the sender so it
// can keep at most a window of unread chunks in flight (TCP-like flow control). A reset discards
// unread chunks, as a socket does on RST; the consumer sees the error at its next read.
import { assert } from '../assert.js';

type BodyEnding = { kind: 'end' } | { kind: 'error'; error: unknown };

interface PendingRead {
  resolve(result: IteratorResult<Uint8Array>): void;
  reject(error: unknown): void;
}

export interface ResponseBodyEvents {
  /** The consumer took one chunk out of the body. */
  onChunkRead(): void;
  /** The consumer stopped early (`break` out of `for await`, or `return()`). */
  onCancel(): void;
}

export class SimResponseBody implements AsyncIterable<Uint8Array>, AsyncIterator<Uint8Array> {
  private readonly unread: Uint8Array[] = [];
  private ending: BodyEnding | null = null;
  private pendingRead: PendingRead | null = null;
  private iteratorTaken = false;

  constructor(private readonly events: ResponseBodyEvents) {}

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    assert(!this.iteratorTaken, 'a response body can be iterated only once');
    this.iteratorTaken = true;
    return this;
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    assert(this.pendingRead === null, 'a response body has one reader at a time');
    const chunk = this.unread.shift();
    if (chunk !== undefined) {
      this.events.onChunkRead();
      return Promise.resolve({ done: false, value: chunk });
    }
    if (this.ending?.kind === 'end') return Promise.resolve({ done: true, value: undefined });
    if (this.ending?.kind === 'error') return Promise.reject(this.ending.error);
    return new Promise((resolve, reject) => {
      this.pendingRead = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<Uint8Array>> {
    if (this.ending === null) {
      this.ending = { kind: 'end' };
      this.unread.length = 0;
      this.takePendingRead()?.resolve({ done: true, value: undefined });
      this.events.onCancel();
    }
    return Promise.resolve({ done: true, value: undefined });
  }

  /** The network delivered the next chunk. */
  deliverChunk(chunk: Uint8Array): void {
    if (this.ending !== null) return;
    const read = this.takePendingRead();
    if (read === null) {
      this.unread.push(chunk);
      return;
    }
    this.events.onChunkRead();
    read.resolve({ done: false, value: chunk });
  }

  /** The sender finished: unread chunks stay readable, then the iterator is done. */
  deliverEnd(): void {
    if (this.ending !== null) return;
    this.ending = { kind: 'end' };
    this.takePendingRead()?.resolve({ done: true, value: undefined });
  }

  /** The exchange broke: unread chunks are discarded and the next read throws `error`. */
  fail(error: unknown): void {
    if (this.ending !== null) return;
    this.ending = { kind: 'error', error };
    this.unread.length = 0;
    this.takePendingRead()?.reject(error);
  }

  private takePendingRead(): PendingRead | null {
    const read = this.pendingRead;
    this.pendingRead = null;
    return read;
  }
}
