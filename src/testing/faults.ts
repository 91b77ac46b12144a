/**
 * Fault injection for reliability tests: a broker that rejects publishes (a count, or a time
 * window), a slow broker, deliveries out of order and late duplicates, dropped connections and a
 * sidecar that reports itself unhealthy.
 */
import { setMaxListeners } from 'node:events';
import { EmulatorError } from './errors';
import { checkInteger } from './options';

export interface PublishFaultOptions {
  /** The broker error text; daprd puts it at the end of the 500 ERR_PUBSUB_PUBLISH_MESSAGE message. */
  error?: string;
}

export interface HealthState {
  /** GET /v1.0/healthz answers 204 when true, 500 ERR_HEALTH_NOT_READY when false. */
  ready?: boolean;
  /** GET /v1.0/healthz/outbound answers 204 when true, 500 when false. */
  outboundReady?: boolean;
}

/** How reorderDeliveries shuffles deliveries. Every field is optional; all zero turns it off. */
export interface ReorderOptions {
  /** Chance (0 to 1) that a delivery of a message to an app is held back before its first attempt. Default 0. */
  holdProbability?: number;
  /** Longest hold, milliseconds; each held delivery waits a random time from 0 to this. Default 0. */
  maxHoldMs?: number;
  /** Chance (0 to 1) that a message, once acked by an app, is delivered to it once more. Default 0. */
  lateRedeliveryProbability?: number;
  /** Longest wait before such a late duplicate, milliseconds (a random time from 0 to this). Default 0. */
  lateRedeliveryMs?: number;
  /** Seed (an integer from 0 to 2^32-1) of the random choices, to make them repeatable. Default: Math.random. */
  seed?: number;
}

interface ReorderSettings {
  holdProbability: number;
  maxHoldMs: number;
  lateRedeliveryProbability: number;
  lateRedeliveryMs: number;
  random: () => number;
}

const REORDER_OPTIONS = new Set(['holdProbability', 'maxHoldMs', 'lateRedeliveryProbability', 'lateRedeliveryMs', 'seed']);

const DEFAULT_PUBLISH_ERROR = 'emulator fault: the broker rejected the message';

export class Faults {
  private failCount = 0;
  private rejectCount = 0;
  private rejectStatus = 429;
  private failCountError = DEFAULT_PUBLISH_ERROR;
  private failUntil = 0;
  private failWindowError = DEFAULT_PUBLISH_ERROR;
  private delayMs = 0;
  private delayGate = newGate();
  private held = 0;
  private reorder: ReorderSettings | undefined;
  private heldForReorderCount = 0;
  private lateCount = 0;
  private health = { ready: true, outboundReady: true };

  constructor(
    private readonly hooks: {
      /** Destroys every open socket of the emulator. */
      closeConnections(): void;
      /** Aborted when the emulator stops. */
      stopSignal: AbortSignal;
    },
  ) {}

  /** The next `n` publishes (single publishes or bulk entries) fail with 500 ERR_PUBSUB_PUBLISH_MESSAGE. */
  failNextPublishes(n: number, opts: PublishFaultOptions = {}): void {
    checkInteger('failNextPublishes(n)', n, 0);
    this.failCount = n;
    this.failCountError = checkError(opts);
  }

  /**
   * The next `n` publish requests (single or bulk) are answered with `status` before the publish
   * API sees them, as a rate-limit middleware (429) or a proxy in front of the sidecar (408) would.
   */
  rejectNextPublishRequests(n: number, status: number): void {
    checkInteger('rejectNextPublishRequests(n)', n, 0);
    checkInteger('rejectNextPublishRequests(status)', status, 400, 599);
    this.rejectCount = n;
    this.rejectStatus = status;
  }

  /** Every publish fails during the next `ms` milliseconds. */
  failPublishesFor(ms: number, opts: PublishFaultOptions = {}): void {
    checkInteger('failPublishesFor(ms)', ms, 0);
    this.failUntil = Date.now() + ms;
    this.failWindowError = checkError(opts);
  }

  /** Each publish and each delivery attempt waits `ms` milliseconds in the broker; 0 turns it off. */
  slowBroker(ms: number): void {
    checkInteger('slowBroker(ms)', ms, 0);
    this.delayMs = ms;
  }

  /**
   * Delivers out of order and redelivers late, so that a subscriber's ordering can be tested.
   * Each delivery of a message to an app is, with `holdProbability`, held back a random time up to
   * `maxHoldMs` before its first attempt (later messages overtake it); and once an app acked a
   * message, with `lateRedeliveryProbability` it is delivered to that app once more, a random time
   * up to `lateRedeliveryMs` later (a late duplicate, as an at-least-once broker may send). A late
   * duplicate is itself neither held nor duplicated again. Applies to bulk subscriptions too: a
   * held message joins a later batch. `null` (or all zero) turns it off.
   */
  reorderDeliveries(opts: ReorderOptions | null): void {
    if (opts === null) {
      this.reorder = undefined;
      return;
    }
    if (typeof opts !== 'object' || Array.isArray(opts)) throw EmulatorError.invalidOption('reorderDeliveries(options)', opts, 'must be an object or null');
    for (const key of Object.keys(opts)) {
      if (!REORDER_OPTIONS.has(key)) throw EmulatorError.invalidOption(`reorderDeliveries(options).${key}`, (opts as Record<string, unknown>)[key], `is not an option (${[...REORDER_OPTIONS].join(', ')})`);
    }
    const holdProbability = opts.holdProbability ?? 0;
    checkProbability('reorderDeliveries(options).holdProbability', holdProbability);
    const maxHoldMs = opts.maxHoldMs ?? 0;
    checkInteger('reorderDeliveries(options).maxHoldMs', maxHoldMs, 0);
    const lateRedeliveryProbability = opts.lateRedeliveryProbability ?? 0;
    checkProbability('reorderDeliveries(options).lateRedeliveryProbability', lateRedeliveryProbability);
    const lateRedeliveryMs = opts.lateRedeliveryMs ?? 0;
    checkInteger('reorderDeliveries(options).lateRedeliveryMs', lateRedeliveryMs, 0);
    if (opts.seed !== undefined) checkInteger('reorderDeliveries(options).seed', opts.seed, 0, 0xffffffff);
    if (holdProbability === 0 && lateRedeliveryProbability === 0) {
      this.reorder = undefined;
      return;
    }
    const random = opts.seed === undefined ? Math.random : mulberry32(opts.seed);
    this.reorder = { holdProbability, maxHoldMs, lateRedeliveryProbability, lateRedeliveryMs, random };
  }

  /** Destroys every open connection now: clients' keep-alive sockets and the emulator's own to apps. */
  closeConnections(): void {
    this.hooks.closeConnections();
  }

  /** Makes the health routes report (un)readiness. */
  setHealth(state: HealthState): void {
    if (state.ready !== undefined) this.health.ready = state.ready;
    if (state.outboundReady !== undefined) this.health.outboundReady = state.outboundReady;
  }

  /** Clears every fault. Operations currently held by slowBroker or reorderDeliveries go on at once. */
  reset(): void {
    this.failCount = 0;
    this.rejectCount = 0;
    this.failUntil = 0;
    this.delayMs = 0;
    this.reorder = undefined;
    this.health = { ready: true, outboundReady: true };
    this.delayGate.abort();
    this.delayGate = newGate();
  }

  /** How many publishes and deliveries are waiting in slowBroker right now. */
  get heldByBroker(): number {
    return this.held;
  }

  /** How many deliveries reorderDeliveries is holding back before their first attempt right now. */
  get heldForReorder(): number {
    return this.heldForReorderCount;
  }

  /** How many late duplicates reorderDeliveries has scheduled and not yet started. */
  get pendingLateRedeliveries(): number {
    return this.lateCount;
  }

  get ready(): boolean {
    return this.health.ready;
  }

  get outboundReady(): boolean {
    return this.health.outboundReady;
  }

  /** Consumes one injected request rejection, if any is due: returns its status. */
  takeRequestRejection(): number | undefined {
    if (this.rejectCount === 0) return undefined;
    this.rejectCount--;
    return this.rejectStatus;
  }

  /** Consumes one injected failure, if any is due: returns the broker error text. */
  takePublishFailure(): string | undefined {
    if (this.failCount > 0) {
      this.failCount--;
      return this.failCountError;
    }
    if (Date.now() < this.failUntil) return this.failWindowError;
    return undefined;
  }

  /** The slowBroker wait. Resolves false only when the emulator is stopping. */
  async brokerDelay(): Promise<boolean> {
    const stop = this.hooks.stopSignal;
    if (stop.aborted) return false;
    if (this.delayMs <= 0) return true;
    this.held++;
    try {
      await this.wait(this.delayMs);
    } finally {
      this.held--;
    }
    return !stop.aborted;
  }

  /**
   * The reorderDeliveries hold of one delivery, drawn when it is asked for: milliseconds to hold
   * it back, or undefined when it goes on at once.
   */
  takeHold(): number | undefined {
    return this.draw('holdProbability', 'maxHoldMs');
  }

  /** Holds a delivery back `ms` milliseconds (see takeHold). Resolves false only when the emulator is stopping. */
  hold(ms: number): Promise<boolean> {
    return this.countedWait(ms, 'heldForReorderCount');
  }

  /**
   * Whether a message an app just acked gets a late duplicate: the milliseconds to wait before
   * it, or undefined for none.
   */
  takeLateRedelivery(): number | undefined {
    return this.draw('lateRedeliveryProbability', 'lateRedeliveryMs');
  }

  /** Waits before a late duplicate (see takeLateRedelivery). Resolves false only when the emulator is stopping. */
  lateRedeliveryWait(ms: number): Promise<boolean> {
    return this.countedWait(ms, 'lateCount');
  }

  /** With the reorder fault's `probability`: a wait of up to `maxMs`, drawn; otherwise undefined. */
  private draw(probability: 'holdProbability' | 'lateRedeliveryProbability', maxMs: 'maxHoldMs' | 'lateRedeliveryMs'): number | undefined {
    const r = this.reorder;
    if (!r || r[probability] === 0 || r.random() >= r[probability]) return undefined;
    return Math.floor(r.random() * (r[maxMs] + 1));
  }

  /** Waits `ms`, counted in `counter` meanwhile. Resolves false only when the emulator is stopping. */
  private async countedWait(ms: number, counter: 'heldForReorderCount' | 'lateCount'): Promise<boolean> {
    this[counter]++;
    try {
      await this.wait(ms);
    } finally {
      this[counter]--;
    }
    return !this.hooks.stopSignal.aborted;
  }

  /** Waits `ms` milliseconds, or until reset() or the emulator stops. */
  private wait(ms: number): Promise<void> {
    const stop = this.hooks.stopSignal;
    const gate = this.delayGate.signal;
    if (stop.aborted || gate.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        gate.removeEventListener('abort', done);
        stop.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      gate.addEventListener('abort', done, { once: true });
      stop.addEventListener('abort', done, { once: true });
    });
  }
}

/** What reset() aborts to end the current waits; each held operation listens to it. */
function newGate(): AbortController {
  const gate = new AbortController();
  setMaxListeners(0, gate.signal);
  return gate;
}

function checkProbability(option: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw EmulatorError.invalidOption(option, value, 'must be a number from 0 to 1');
  }
}

/** A small seeded PRNG (mulberry32): numbers in [0, 1), the same sequence for the same seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function checkError(opts: PublishFaultOptions): string {
  if (opts === null || typeof opts !== 'object') throw EmulatorError.invalidOption('opts', opts, 'must be an object');
  if (opts.error === undefined) return DEFAULT_PUBLISH_ERROR;
  if (typeof opts.error !== 'string' || opts.error === '') {
    throw EmulatorError.invalidOption('opts.error', opts.error, 'must be a non-empty string');
  }
  return opts.error;
}
