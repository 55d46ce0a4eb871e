// Peer messages are checked field by field when they arrive: a malformed one is refused (400)
// instead of throwing later inside a feed that reads it.
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage, isAckMessage, isFeedRequest } from './protocol.js';

const ack = { v: 1, site: 'eu-west', vector: { 'us-east.1': 3 }, origin: 'eu-west.1', ownSeq: 0, direct: ['us-east'] };

describe('peer message checks', () => {
  it('accepts a well-formed ack, with or without its direct list', () => {
    expect(isAckMessage(decodeMessage(encodeMessage(ack)))).toBe(true);
    const { direct: _direct, ...withoutDirect } = ack;
    expect(isAckMessage(withoutDirect)).toBe(true);
  });

  it('refuses an ack whose direct list, vector, origin or own seq is malformed', () => {
    for (const bad of [
      { ...ack, direct: 5 },
      { ...ack, direct: 'us-east' },
      { ...ack, direct: [1] },
      { ...ack, direct: Array.from({ length: 300 }, (_, i) => `s${i}`) },
      { ...ack, vector: { 'us-east.1': -1 } },
      { ...ack, vector: [] },
      { ...ack, origin: 7 },
      { ...ack, ownSeq: 1.5 },
      { ...ack, site: undefined },
      null,
      'ack',
    ])
      expect(isAckMessage(bad), JSON.stringify(bad)?.slice(0, 80)).toBe(false);
  });

  it('checks feed requests the same way', () => {
    expect(isFeedRequest({ v: 1, site: 'eu-west', vector: {}, origin: 'eu-west.1' })).toBe(true);
    expect(isFeedRequest({ v: 1, site: 'eu-west', vector: {}, origin: 5 })).toBe(false);
    expect(isFeedRequest({ v: 1, site: 'eu-west', vector: { a: 'x' } })).toBe(false);
  });
});
