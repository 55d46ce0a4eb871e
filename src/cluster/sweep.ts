// The seed sweep behind the simulation commands (simulate-failover.js, simulate-homes.js): many
// seeds beyond the suite's, one line per failing seed with the command that replays it exactly,
// failing seeds counted by anomaly, and a summary. Flags: --seeds N, --from S, --fault NAME (one
// fault for every seed; default: drawn per seed), and the command's own whole-number flags; a bad
// flag exits 2 naming it.

export interface SweepRun {
  fault: string;
  anomalies: { kind: string; detail: string }[];
  acked: number;
  ackedQuorum?: number;
}

export interface SweepSpec<R extends SweepRun> {
  /** the command's file under dist/cluster, e.g. 'simulate-failover' */
  command: string;
  faults: readonly string[];
  /** the command's own flags and their defaults, e.g. { '--lease-ms': 1000 }: whole numbers, but for `fractions` */
  flags: Record<string, number>;
  /** flags that take a probability (0..1) */
  fractions?: string[];
  run(seed: number, fault: string | undefined, flags: Record<string, number>): Promise<R>;
  /** a figure summarized per fault (median and max), e.g. the simulated time to promote */
  figure?: { name: string; of(r: R): number | undefined };
  /** counts summed over every seed and printed (e.g. answers by status) */
  tally?(r: R): Record<string, number>;
}

/** Runs the sweep `argv` asks for; resolves to the exit code (0 all passed, 1 a seed failed, 2 bad usage). */
export async function sweep<R extends SweepRun>(spec: SweepSpec<R>, argv: string[], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const numeric = { '--seeds': 1000, '--from': 1, ...spec.flags };
  const usage = `usage: node dist/cluster/${spec.command}.js ${Object.keys(numeric).map((f) => `${f === '--seeds' ? '' : '['}${f} N${f === '--seeds' ? '' : ']'}`).join(' ')} [--fault NAME]`;
  const values: Record<string, number> = { ...numeric };
  let fault: string | undefined;
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i]!;
    if (name === '--help' || name === '-h') {
      out(`${usage}\nfaults: ${spec.faults.join(', ')} (default: drawn per seed)`);
      return 0;
    }
    const value = argv[i + 1];
    const bad =
      !(name in numeric || name === '--fault') ? `unknown flag ${name}` :
      value === undefined ? `${name} needs a value` :
      spec.fractions?.includes(name) && !(Number(value) >= 0 && Number(value) <= 1) ? `${name} must be a probability (0..1), got ${value}` :
      name !== '--fault' && !spec.fractions?.includes(name) && !(Number.isInteger(Number(value)) && Number(value) >= 0) ? `${name} must be a whole number, got ${value}` :
      name === '--fault' && !spec.faults.includes(value) ? `--fault must be one of ${spec.faults.join(', ')}, got ${value}` :
      undefined;
    if (bad !== undefined) {
      process.stderr.write(`${spec.command}: ${bad}\n${usage}\n`);
      return 2;
    }
    if (name === '--fault') fault = value;
    else values[name] = Number(value);
  }
  const count = values['--seeds']!;
  const from = values['--from']!;
  const own = Object.fromEntries(Object.keys(spec.flags).map((f) => [f, values[f]!]));
  const replay = (seed: number) =>
    `node dist/cluster/${spec.command}.js --seeds 1 --from ${seed}${Object.entries(own).map(([f, v]) => ` ${f} ${v}`).join('')}${fault !== undefined ? ` --fault ${fault}` : ''}`;
  let failed = 0;
  let acked = 0;
  let ackedQuorum = 0;
  const byFault = new Map<string, { runs: number; figures: number[] }>();
  const kinds = new Map<string, number>();
  const totals = new Map<string, number>();
  const started = performance.now();
  for (let seed = from; seed < from + count; seed++) {
    try {
      const r = await spec.run(seed, fault, own);
      acked += r.acked;
      ackedQuorum += r.ackedQuorum ?? 0;
      const f = byFault.get(r.fault) ?? { runs: 0, figures: [] };
      f.runs++;
      const figure = spec.figure?.of(r);
      if (figure !== undefined) f.figures.push(figure);
      byFault.set(r.fault, f);
      for (const [k, n] of Object.entries(spec.tally?.(r) ?? {})) totals.set(k, (totals.get(k) ?? 0) + n);
      if (r.anomalies.length > 0) {
        failed++;
        for (const k of new Set(r.anomalies.map((a) => a.kind))) kinds.set(k, (kinds.get(k) ?? 0) + 1);
        out(`FAIL seed ${seed} (${r.fault}): ${r.anomalies.slice(0, 3).map((a) => `[${a.kind}] ${a.detail}`).join('; ')}\n  replay: ${replay(seed)}`);
      }
    } catch (e) {
      failed++;
      out(`FAIL seed ${seed}: ${(e as Error).message.split('\n')[0]}\n  replay: ${replay(seed)}`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const [name, f] of byFault)
    out(`${name}: ${f.runs} runs${f.figures.length > 0 && spec.figure ? `, ${spec.figure.name} median ${median(f.figures)} ms, max ${Math.max(...f.figures)} ms` : ''}`);
  if (totals.size > 0) out(`totals: ${[...totals].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  if (kinds.size > 0) out(`failing seeds by anomaly: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  out(`${count - failed} passed, ${failed} failed (seeds ${from}..${from + count - 1}; ${acked} acknowledged writes${ackedQuorum > 0 ? `, ${ackedQuorum} quorum` : ''}; ${Math.round((performance.now() - started) / 1000)} s)`);
  return failed > 0 ? 1 : 0;
}
