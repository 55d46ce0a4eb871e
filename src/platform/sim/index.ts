// Public surface of the deterministic simulator: a seeded world with simulated time, a simulated
// network with named fault knobs, seeded randomness, loggers for sim nodes and replay helpers.
export { SimWorld, SimStalledError } from './world.js';
export type { SimWorldOptions, SimEnvOptions, TraceEntry } from './world.js';
export { SimNetwork, SimNetworkError, simNetworkDefaults, siteOfNode } from './network.js';
export type { SimNetworkOptions, SimNetworkErrorCode, SimPartition, SimScheduler } from './network.js';
export { SeededRandom, seededRandom } from './random.js';
export { CapturingLogger } from './logger.js';
export type { LogLevel, LogRecord } from './logger.js';
export { silentLogger } from '../env.js';
export { seedsToRun, withSeed } from './replay.js';
export { AssertionError } from '../assert.js';
