/**
 * Fault injection for reliability tests: a broker that rejects publishes (a count, or a time
 * window), a slow broker, dropped connections and a sidecar that reports itself unhealthy.
 */
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

const DEFAULT_PUBLISH_ERROR = 'emulator fault: the broker rejected the message';

export class Faults {
  private failCount = 0;
  private rejectCount = 0;
  private rejectStatus = 429;
  private failCountError = DEFAULT_PUBLISH_ERROR;
  private failUntil = 0;
  private failWindowError = DEFAULT_PUBLISH_ERROR;
  private delayMs = 0;
  private delayGate = new AbortController();
  private held = 0;
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

  /** Destroys every open connection now: clients' keep-alive sockets and the emulator's own to apps. */
  closeConnections(): void {
    this.hooks.closeConnections();
  }

  /** Makes the health routes report (un)readiness. */
  setHealth(state: HealthState): void {
    if (state.ready !== undefined) this.health.ready = state.ready;
    if (state.outboundReady !== undefined) this.health.outboundReady = state.outboundReady;
  }

  /** Clears every fault. Operations currently held by slowBroker go on at once. */
  reset(): void {
    this.failCount = 0;
    this.rejectCount = 0;
    this.failUntil = 0;
    this.delayMs = 0;
    this.health = { ready: true, outboundReady: true };
    this.delayGate.abort();
    this.delayGate = new AbortController();
  }

  /** How many publishes and deliveries are waiting in slowBroker right now. */
  get heldByBroker(): number {
    return this.held;
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
    const gate = this.delayGate.signal;
    this.held++;
    try {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          gate.removeEventListener('abort', done);
          stop.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, this.delayMs);
        gate.addEventListener('abort', done, { once: true });
        stop.addEventListener('abort', done, { once: true });
      });
    } finally {
      this.held--;
    }
    return !stop.aborted;
  }
}

function checkError(opts: PublishFaultOptions): string {
  if (opts === null || typeof opts !== 'object') throw EmulatorError.invalidOption('opts', opts, 'must be an object');
  if (opts.error === undefined) return DEFAULT_PUBLISH_ERROR;
  if (typeof opts.error !== 'string' || opts.error === '') {
    throw EmulatorError.invalidOption('opts.error', opts.error, 'must be a non-empty string');
  }
  return opts.error;
}
