// Typed usage errors and flag parsers shared by every subcommand: bad flags exit 2 naming the flag.
import { InvalidArgumentError } from 'commander';

export class UsageError extends Error {
  override name = 'UsageError';
}

export function intFlag(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError(`${name} expects an integer, got "${value}"`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} expects ${min}..${max}, got ${n}`);
    return n;
  };
}
