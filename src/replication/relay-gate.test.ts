import { describe, expect, it } from 'vitest';
import { RelayGate } from './relay-gate.js';

describe('RelayGate', () => {
  const setup = (initial = {}) => {
    let now = 1_000;
    const gate = new RelayGate(300, () => now, 'me.1', initial, 4);
    return { gate, advance: (ms: number) => (now += ms), at: () => now };
  };

  it('lets what the site held at start through at once, and new entries only after the delay', () => {
    const { gate, advance, at } = setup({ 'a.1': 5 });
    expect(gate.relayable('a.1')).toBe(5);
    gate.record({ 'a.1': 8, 'me.1': 3 });
    expect(gate.relayable('a.1')).toBe(5);
    expect(gate.relayableAtMs('a.1', 5)).toBe(at() + 300);
    advance(299);
    expect(gate.relayable('a.1')).toBe(5);
    advance(1);
    expect(gate.relayable('a.1')).toBe(8);
    expect(gate.relayableAtMs('a.1', 8)).toBeUndefined();
  });

  it('releases entries in the order they arrived, each after its own delay', () => {
    const { gate, advance, at } = setup();
    gate.record({ 'a.1': 2 });
    advance(100);
    const second = at();
    gate.record({ 'a.1': 4 });
    advance(200);
    expect(gate.relayable('a.1')).toBe(2);
    expect(gate.relayableAtMs('a.1', 2)).toBe(second + 300);
    advance(100);
    expect(gate.relayable('a.1')).toBe(4);
  });

  it('never tracks its own origin, and stays bounded by counting the oldest marks as due', () => {
    const { gate, advance } = setup();
    for (let i = 1; i <= 10; i++) {
      gate.record({ 'a.1': i, 'me.1': i });
      advance(1);
    }
    expect(gate.relayable('me.1')).toBe(0);
    expect(gate.relayableAtMs('me.1', 0)).toBeUndefined();
    // 4 marks kept: seqs 7..10 held back, 1..6 due
    expect(gate.relayable('a.1')).toBe(6);
  });

  it('ignores a vector that does not move an origin forward', () => {
    const { gate, advance } = setup({ 'a.1': 3 });
    gate.record({ 'a.1': 3 });
    gate.record({ 'a.1': 2 });
    expect(gate.relayableAtMs('a.1', 3)).toBeUndefined();
    advance(1_000);
    expect(gate.relayable('a.1')).toBe(3);
  });

  it('holds back an origin from a peer while its acks show it moving forward there, and not once it stands still', () => {
    const { gate, advance, at } = setup();
    // the first ack only sets where the peer stood: nothing says it is moving yet
    gate.observeAck('p', { 'a.1': 10, 'b.1': 4 });
    expect(gate.movingUntilMs('p', 'a.1')).toBeUndefined();
    advance(50);
    gate.observeAck('p', { 'a.1': 40, 'b.1': 4 });
    const movedAt = at();
    expect(gate.movingUntilMs('p', 'a.1')).toBe(movedAt + 300);
    expect(gate.movingUntilMs('p', 'b.1')).toBeUndefined();
    // an ack that does not move it forward leaves the time it last moved
    advance(200);
    gate.observeAck('p', { 'a.1': 40, 'b.1': 4 });
    expect(gate.movingUntilMs('p', 'a.1')).toBe(movedAt + 300);
    advance(100);
    expect(gate.movingUntilMs('p', 'a.1')).toBeUndefined();
    // an origin first seen in a later ack counts as moving; another peer is tracked on its own
    gate.observeAck('p', { 'a.1': 40, 'b.1': 4, 'c.1': 2 });
    expect(gate.movingUntilMs('p', 'c.1')).toBe(at() + 300);
    expect(gate.movingUntilMs('q', 'a.1')).toBeUndefined();
  });
});
