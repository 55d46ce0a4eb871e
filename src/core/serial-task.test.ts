import { describe, expect, it } from 'vitest';
import { SerialTask } from './serial-task.js';

/** A run that waits until the test lets it end. */
function gatedRuns() {
  const seen: number[][] = [];
  const gates: (() => void)[] = [];
  let work: number[] = [];
  const task = new SerialTask(
    async () => {
      const batch = work;
      work = [];
      seen.push(batch);
      await new Promise<void>((resolve) => gates.push(resolve));
    },
    (err) => {
      throw err;
    },
  );
  return { task, seen, gates, add: (n: number) => (work = [...work, n]) };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('SerialTask', () => {
  it('runs once more for requests made during a run, never two at once', async () => {
    const { task, seen, gates, add } = gatedRuns();
    add(1);
    task.request();
    await tick();
    expect(seen).toEqual([[1]]);
    // two requests during the run: one more run, which sees both
    add(2);
    task.request();
    add(3);
    task.request();
    await tick();
    expect(seen).toEqual([[1]]);
    gates.shift()!();
    await tick();
    expect(seen).toEqual([[1], [2, 3]]);
    expect(task.busy).toBe(true);
    gates.shift()!();
    await tick();
    expect(task.busy).toBe(false);
    expect(seen).toHaveLength(2);
  });

  it('reports a run that threw and runs again on the next request', async () => {
    const errors: unknown[] = [];
    let runs = 0;
    const task = new SerialTask(
      () => {
        runs++;
        return runs === 1 ? Promise.reject(new Error('disk full')) : Promise.resolve();
      },
      (err) => errors.push(err),
    );
    task.request();
    await tick();
    expect(errors).toEqual([new Error('disk full')]);
    expect(task.busy).toBe(false);
    task.request();
    await tick();
    expect(runs).toBe(2);
    expect(errors).toHaveLength(1);
  });
});
