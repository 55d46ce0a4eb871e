// Seeds for simulation tests: which seeds to run, and failures that say how to replay them.
// `SEED=<n> npx vitest run <file>` reruns only seed n.

/** The seeds a simulation test should run: `SEED` from the environment if set, else `defaultSeeds`. */
export function seedsToRun(defaultSeeds: readonly number[]): number[] {
  const fromEnv = process.env.SEED;
  if (fromEnv === undefined || fromEnv === '') return [...defaultSeeds];
  const seed = Number(fromEnv);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new RangeError(`SEED must be a uint32, got ${fromEnv}`);
  return [seed];
}

/** Runs `run(seed)`; if it fails, the error's message ends with `replay: SEED=<seed>`. */
export async function withSeed<T>(seed: number, run: (seed: number) => Promise<T> | T): Promise<T> {
  try {
    return await run(seed);
  } catch (error) {
    const replay = `replay: SEED=${seed}`;
    if (error instanceof Error) {
      if (!error.message.includes(replay)) error.message = `${error.message}\n${replay}`;
      throw error;
    }
    throw new Error(`${String(error)}\n${replay}`, { cause: error });
  }
}
