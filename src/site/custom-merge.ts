// Loads a table's custom merge function (`conflict: custom`, `merge: <path>`) and runs it in a
// sandbox whose bounds are deterministic, so every site resolves the same siblings the same way.
// The module is a CommonJS-style script that sets `module.exports.merge` (or `exports.merge`, or
// defines a top-level `function merge`). It is called as `merge(siblingsSortedByVersion, { table })`
// and must return a JSON object. A merge that throws, returns something else, or exceeds a bound makes
// every site fall back to LWW over the same siblings (materialize.ts).
//
// Why QuickJS (quickjs-emscripten: the QuickJS interpreter compiled to WebAssembly), not node:vm:
// - node:vm bounds a script by wall-clock time only, so one merge could finish on one site and time
//   out on a slower or busier one. QuickJS polls at every jump and every function call and calls its
//   interrupt handler once per 10,000 polls (JS_INTERRUPT_COUNTER_INIT), a counter kept per context.
//   In a fresh context the number of handler calls is a function of the code and its input alone:
//   that count is the step budget.
// - Stack (setMaxStackSize) is checked by QuickJS itself, in a fresh runtime each call. Memory: in
//   this build QuickJS's setMemoryLimit counts 8 bytes per allocation (emscripten has no
//   malloc_usable_size), so it bounds the number of allocations and the size of any one, not bytes.
//   The byte bound is the WebAssembly memory's maximum, which we supply (mergeMemoryBytesMax). A call
//   that grew that memory or failed gets a new instance for the next call, so a merge starts from a
//   heap that has only seen calls that freed all they took.
// - The sources of nondeterminism a merge could read are left out: no Date, no Math.random, no
//   WeakRef or FinalizationRegistry (which would show when the collector ran).
// - A fresh runtime and context per call: a merge cannot keep state from one call to the next.
// - It runs in a worker thread with a large native stack. QuickJS's stack limit counts WebAssembly
//   linear memory, but the wasm frames use the thread's native stack too, up to ~30 times more (a
//   deeply nested JSON.stringify): on the caller's thread V8's own stack limit, which depends on how
//   deep the caller is and on the JIT tier, could fire first. The caller blocks on the worker's answer
//   (Atomics.wait), so a merge is still a synchronous call.
//
// `mergeTimeoutMs` (table config) is now a step budget: mergeTimeoutMs × mergeStepsPerMs steps, about
// what a merge does in that time on a reference machine; a slower machine takes longer and decides the
// same. The wall clock is left only as a safety net far above it (the worker is ended and restarted):
// it is counted and logged, because when it fires two sites may have resolved the same siblings
// differently.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { assert } from '../core/assert.js';
import { canonicalJson, type JsonValue } from '../core/canonical-json.js';
import type { CustomMerge } from '../core/materialize.js';
import type { Logger } from '../platform/env.js';
import { limits } from '../limits.js';

/** Steps one millisecond of `mergeTimeoutMs` buys (measured here: ~4,500/ms allocating objects, ~110,000/ms in a bare loop). */
export const mergeStepsPerMs = 10_000;
/** QuickJS calls the interrupt handler once per this many polls (JS_INTERRUPT_COUNTER_INIT). */
const stepsPerInterrupt = 10_000;
/** The sandbox's whole heap (the wasm memory maximum): siblingsMax items of itemBodyBytesMax, parsed, many times over. */
export const mergeMemoryBytesMax = 256 * 1024 * 1024;
/** QuickJS's own limit: at most this / 8 live allocations, none larger than this (see the header). */
const quickjsMallocLimit = 64 * 1024 * 1024;
/** QuickJS stack (in wasm linear memory) of one call: ~1,300 plain JS frames. */
const mergeStackBytesMax = 256 * 1024;
/** The worker's native stack: measured, 8 MiB covers every construct tried at the QuickJS limit above. */
const workerStackMb = 64;
/**
 * Safety net: a merge still running after this long is abandoned (a nondeterminism: logged, counted).
 * Far above the budget: time per step varies ~30 times between a bare loop and allocating strings
 * (measured), and a step can be one slow builtin (a deep JSON.stringify is quadratic in its depth).
 */
const wallMsFloor = 5_000;
const wallMsPerTimeoutMs = 100;
/** Starting the worker (a thread, compiling QuickJS): once per process, and after a safety-net firing. */
const workerStartMsMax = 30_000;

assert(mergeMemoryBytesMax > 16 * limits.siblingsMax * limits.itemBodyBytesMax, 'a merge can hold its input many times over');
assert(mergeMemoryBytesMax % 65_536 === 0, 'whole wasm pages');

export interface LoadedMerge {
  merge: CustomMerge;
  /** merges that fell back to LWW deterministically: threw, bad result, step/memory/stack bound */
  failures: () => number;
  /** merges abandoned by the wall-clock safety net or a sandbox crash: sites may have resolved differently */
  nondeterministicFailures: () => number;
}

export interface LoadOptions {
  /** where safety-net firings are reported (else as a process warning, code TANDEM_MERGE_SAFETY_NET) */
  log?: Pick<Logger, 'warn'>;
  /** the safety net, if not the one mergeBounds derives from mergeTimeoutMs */
  wallMsMax?: number;
}

export function loadCustomMerge(
  modulePath: string,
  configPath: string | undefined,
  timeoutMs: number,
  table: string,
  options: LoadOptions = {},
): LoadedMerge {
  const { log } = options;
  const file = resolve(configPath ? dirname(configPath) : process.cwd(), modulePath);
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`tables.${table}.merge: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  const bounds = { ...mergeBounds(timeoutMs), ...(options.wallMsMax !== undefined ? { wallMsMax: options.wallMsMax } : {}) };
  const sandbox = sharedSandbox();
  const probe = sandbox.run({ source, filename: file, table, interruptsMax: bounds.interruptsMax }, bounds.wallMsMax);
  if (probe.kind === 'not-json') throw new Error(`tables.${table}.merge: ${file} does not export a merge function`);
  if (probe.kind !== 'ok') throw new Error(`tables.${table}.merge: ${file} failed to load: ${describe(probe)}`);

  let failed = 0;
  let nondeterministic = 0;
  return {
    failures: () => failed,
    nondeterministicFailures: () => nondeterministic,
    merge: (siblings) => {
      const reply = sandbox.run({ source, filename: file, table, interruptsMax: bounds.interruptsMax, input: JSON.stringify(siblings) }, bounds.wallMsMax);
      if (reply.kind === 'wall-clock' || reply.kind === 'crashed') {
        nondeterministic++;
        const fields = { table, file, reply: reply.kind, wallMsMax: bounds.wallMsMax, siblings: siblings.length };
        const msg = `custom merge ${describe(reply)}: sites may resolve these siblings differently`;
        if (log) log.warn(fields, msg);
        else process.emitWarning(`${msg} (${JSON.stringify(fields)})`, { code: 'TANDEM_MERGE_SAFETY_NET' });
      }
      if (reply.kind !== 'ok') {
        if (reply.kind !== 'wall-clock' && reply.kind !== 'crashed') failed++;
        throw new Error(`custom merge for ${table}: ${describe(reply)}`);
      }
      const value = JSON.parse(reply.output) as JsonValue;
      if (Buffer.byteLength(canonicalJson(value)) > limits.itemBodyBytesMax) {
        failed++;
        throw new Error(`custom merge for ${table}: the result exceeds ${limits.itemBodyBytesMax} bytes`);
      }
      return value;
    },
  };
}

/** The step budget (in interrupt-handler calls) and the safety net that `mergeTimeoutMs` stands for. */
export function mergeBounds(timeoutMs: number): { interruptsMax: number; wallMsMax: number } {
  assert(Number.isInteger(timeoutMs) && timeoutMs >= 1, 'mergeTimeoutMs is a positive integer');
  return {
    interruptsMax: Math.ceil((timeoutMs * mergeStepsPerMs) / stepsPerInterrupt),
    wallMsMax: Math.max(wallMsFloor, timeoutMs * wallMsPerTimeoutMs),
  };
}

interface SandboxRequest {
  source: string;
  filename: string;
  table: string;
  interruptsMax: number;
  /** the siblings as JSON; absent: only load the module and check that it exports a merge */
  input?: string;
}

type SandboxReply =
  | { kind: 'ok'; output: string }
  | { kind: 'not-json' }
  | { kind: 'threw'; message: string }
  | { kind: 'steps' }
  | { kind: 'crashed'; message: string }
  | { kind: 'wall-clock' };

function describe(reply: Exclude<SandboxReply, { kind: 'ok' }>): string {
  switch (reply.kind) {
    case 'not-json':
      return 'returned nothing JSON can hold';
    case 'threw':
      return `threw ${reply.message}`;
    case 'steps':
      return 'exceeded its step budget';
    case 'crashed':
      return `the sandbox failed: ${reply.message}`;
    case 'wall-clock':
      return 'abandoned by the wall-clock safety net';
  }
}

/**
 * One worker per process runs every table's merges, one at a time (each caller blocks until its
 * answer): a thread with a large stack and a wasm heap is not worth having per table or per site.
 */
let shared: MergeSandbox | undefined;

function sharedSandbox(): MergeSandbox {
  shared ??= new MergeSandbox();
  return shared;
}

class MergeSandbox {
  private worker: { thread: Worker; replies: MessagePort } | undefined;
  /** [0]: set to 1 by the worker when a reply is posted; [1]: set to 1 once QuickJS is loaded */
  private signal = new Int32Array(new SharedArrayBuffer(8));

  run(request: SandboxRequest, wallMsMax: number): SandboxReply {
    const worker = this.worker ?? this.start();
    if (worker === undefined) return { kind: 'crashed', message: `the sandbox did not start within ${workerStartMsMax} ms` };
    Atomics.store(this.signal, 0, 0);
    worker.thread.postMessage(request);
    const waited = Atomics.wait(this.signal, 0, 0, wallMsMax);
    const reply = receiveMessageOnPort(worker.replies)?.message as SandboxReply | undefined;
    if (waited === 'timed-out' || reply === undefined) {
      this.stop();
      return { kind: 'wall-clock' };
    }
    if (reply.kind === 'crashed') this.stop();
    return reply;
  }

  private start(): { thread: Worker; replies: MessagePort } | undefined {
    const require = createRequire(import.meta.url);
    const { port1, port2 } = new MessageChannel();
    this.signal = new Int32Array(new SharedArrayBuffer(8));
    const thread = new Worker(workerSource, {
      eval: true,
      workerData: {
        corePath: require.resolve('quickjs-emscripten-core'),
        variantPath: require.resolve('@jitl/quickjs-wasmfile-release-sync'),
        signal: this.signal.buffer,
        replies: port2,
        memoryPagesMax: mergeMemoryBytesMax / 65_536,
        mallocLimit: quickjsMallocLimit,
        stackBytesMax: mergeStackBytesMax,
      },
      transferList: [port2],
      resourceLimits: { stackSizeMb: workerStackMb },
    });
    // a merge never keeps the process alive; a worker that fails is restarted by the next merge
    thread.unref();
    thread.on('error', (e: Error) => process.emitWarning(`custom merge sandbox failed: ${e.message}`, { code: 'TANDEM_MERGE_SANDBOX' }));
    if (Atomics.wait(this.signal, 1, 0, workerStartMsMax) === 'timed-out') {
      void thread.terminate();
      port1.close();
      return undefined;
    }
    this.worker = { thread, replies: port1 };
    return this.worker;
  }

  private stop(): void {
    if (this.worker === undefined) return;
    void this.worker.thread.terminate();
    this.worker.replies.close();
    this.worker = undefined;
  }
}

// The worker: plain CommonJS (it is not compiled with the project), loading QuickJS by resolved path.
const workerSource = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const { dirname, join } = require('node:path');
const { newQuickJSWASMModuleFromVariant, newVariant } = require(workerData.corePath);
const variant = require(workerData.variantPath);
const compiled = new WebAssembly.Module(readFileSync(join(dirname(workerData.variantPath), 'emscripten-module.wasm')));
const signal = new Int32Array(workerData.signal);
const replies = workerData.replies;
const intrinsics = { BaseObjects: true, JSON: true, MapSet: true, RegExp: true, Eval: true };
const prelude = 'delete Math.random; delete globalThis.WeakRef; delete globalThis.FinalizationRegistry;' +
  'globalThis.module = { exports: {} }; globalThis.exports = globalThis.module.exports;';
const found = '((module.exports && module.exports.merge) || exports.merge || (typeof merge === "function" ? merge : undefined))';

function reply(message) {
  replies.postMessage(message);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
}

function run(QuickJS, request) {
  const runtime = QuickJS.newRuntime();
  let interrupts = 0;
  runtime.setInterruptHandler(() => ++interrupts > request.interruptsMax);
  runtime.setMemoryLimit(workerData.mallocLimit);
  runtime.setMaxStackSize(workerData.stackBytesMax);
  const context = runtime.newContext({ intrinsics });
  try {
    // a probe (no input) only loads the module and answers "{}" if it has a merge function
    const call = request.input === undefined
      ? 'typeof ' + found + ' === "function" ? "{}" : undefined'
      : 'JSON.stringify(' + found + '(JSON.parse(__input), { table: ' + JSON.stringify(request.table) + ' }))';
    const input = context.newString(request.input === undefined ? '' : request.input);
    context.setProp(context.global, '__input', input);
    input.dispose();
    let output;
    for (const [code, filename] of [[prelude, 'prelude.js'], [request.source, request.filename], [call, 'call.js']]) {
      const result = context.evalCode(code, filename);
      if (result.error) {
        const error = context.dump(result.error);
        result.error.dispose();
        if (interrupts > request.interruptsMax) return { kind: 'steps' };
        const described = error !== null && typeof error === 'object' && 'message' in error ? error.name + ': ' + error.message : String(error);
        return { kind: 'threw', message: described };
      }
      output = context.typeof(result.value) === 'string' ? context.getString(result.value) : undefined;
      result.value.dispose();
    }
    return output === undefined ? { kind: 'not-json' } : { kind: 'ok', output };
  } finally {
    context.dispose();
    runtime.dispose();
  }
}

// a fresh instance: a fresh heap, whose maximum is the sandbox's memory bound (256 pages: the build's minimum)
async function newInstance() {
  const memory = new WebAssembly.Memory({ initial: 256, maximum: workerData.memoryPagesMax });
  const QuickJS = await newQuickJSWASMModuleFromVariant(newVariant(variant.default || variant, { wasmModule: compiled, wasmMemory: memory }));
  return { QuickJS, memory, bytes: memory.buffer.byteLength };
}

let instance = newInstance();
let queue = instance.then(() => {
  Atomics.store(signal, 1, 1);
  Atomics.notify(signal, 1);
});
parentPort.on('message', (request) => {
  queue = queue.then(async () => {
    const { QuickJS, memory, bytes } = await instance;
    let message;
    try {
      message = run(QuickJS, request);
    } catch (e) {
      // outside QuickJS's own bounds (the native stack, a wasm trap): this thread can no longer be trusted
      reply({ kind: 'crashed', message: String(e && e.message) });
      process.exit(1);
    }
    reply(message);
    if (message.kind !== 'ok' || memory.buffer.byteLength !== bytes) instance = newInstance();
  });
});
`;
