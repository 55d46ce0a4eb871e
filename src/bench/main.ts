// `npm run bench -- <name> [args]`: picks a benchmark by name and runs it. Each benchmark lives in
// its own `<name>.bench.ts` and is loaded only when asked for, so one that is missing or broken
// does not keep the others from running. Without a name, the write benchmark runs.
// Exit codes: 0 after a measurement (whether or not it met its targets), 2 on bad usage.
type BenchRunner = (args: string[]) => Promise<void>;

interface BenchEntry {
  summary: string;
  load: () => Promise<BenchRunner>;
}

class BenchMissingError extends Error {}

/** Loads a module whose presence is optional (written later, or by someone else). */
async function loadOptional(specifier: string, exportName: string): Promise<BenchRunner> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    throw new BenchMissingError(`cannot load ${specifier}: ${(error as Error).message}`);
  }
  const runner = mod[exportName];
  if (typeof runner !== 'function') throw new BenchMissingError(`${specifier} does not export a function ${exportName}`);
  return runner as BenchRunner;
}

const benches: Record<string, BenchEntry> = {
  write: {
    summary: 'durable single-item PUTs to a real site process vs an empty handler on the same HTTP stack',
    load: async () => (await import('./write.bench.js')).runWriteBench,
  },
  'write-path': {
    summary: 'main-thread cost of a durable write below HTTP (new keys, overwrites in order and at random), low-noise',
    load: async () => (await import('./write-path.bench.js')).runWritePathBench,
  },
  router: {
    summary: 'requests/s and added latency of the router vs a direct connection and nginx',
    load: async () => (await import('./router.bench.js')).runRouterBench,
  },
  failover: { summary: 'time to promote a new owner after SIGKILL of the owner (two lease lengths); added latency of forwarding and quorum', load: async () => (await import('./failover.bench.js')).runFailoverBench },
  backup: {
    summary: 'restore of 1M items to a point in time, backup cost on write throughput, p99 during snapshots, restore-point trail at 1,000 writes/s',
    load: async () => (await import('./backup.bench.js')).runBackupBench,
  },
  replication: {
    summary: 'replication throughput and lag between sites',
    load: () => loadOptional('./replication.bench.js', 'runReplicationBench'),
  },
};

const defaultBench = 'write';

function helpText(): string {
  const width = Math.max(...Object.keys(benches).map((n) => n.length));
  return [
    'usage: npm run bench -- [name] [args]    (or: node dist/bench/main.js [name] [args])',
    '',
    'benchmarks:',
    ...Object.entries(benches).map(([name, b]) => `  ${name.padEnd(width)}  ${b.summary}${name === defaultBench ? ' (default)' : ''}`),
    '',
    'Each takes its own flags; see the head of src/bench/<name>.bench.ts. Results go to bench-results/.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(`${helpText()}\n`);
    return 0;
  }
  // No name (or only flags): the default benchmark, with those flags.
  const named = first !== undefined && !first.startsWith('-');
  const name = named ? first : defaultBench;
  const args = named ? rest : argv;
  const bench = benches[name];
  if (bench === undefined) {
    process.stderr.write(`bench: unknown benchmark "${name}"\n\n${helpText()}\n`);
    return 2;
  }
  let run: BenchRunner;
  try {
    run = await bench.load();
  } catch (error) {
    if (!(error instanceof BenchMissingError)) throw error;
    process.stderr.write(`bench: the ${name} benchmark is not available (${error.message}) — it is built from src/bench/${name}.bench.ts by npm run build\n`);
    return 2;
  }
  try {
    await run(args);
  } catch (error) {
    if ((error as Error).name === 'BenchUsageError' || /bad flag/.test((error as Error).message)) {
      process.stderr.write(`bench ${name}: ${(error as Error).message}\n`);
      return 2;
    }
    throw error;
  }
  return 0;
}

// Exit explicitly: keep-alive sockets of the load generator and of fetch would otherwise linger.
process.exit(await main(process.argv.slice(2)));
