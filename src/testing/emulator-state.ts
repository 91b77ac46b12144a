/**
 * The state every part of the emulator shares: options, records, faults, in-flight work, the
 * stop signal, the app channel and the broker. One EmulatorState per DaprEmulator; sidecars,
 * the broker and deliveries all read it.
 */
import { setMaxListeners } from 'node:events';
import { AppClient } from './app-client';
import { Broker } from './broker';
import { Faults } from './faults';
import { InFlight } from './in-flight';
import { ResolvedOptions } from './options';
import { Recorder } from './records';

/** A message as the in-memory broker stores it. */
export interface BrokerMessage {
  /** Emulator-internal id, unique per broker message. */
  messageId: string;
  pubsubName: string;
  topic: string;
  /** The stored bytes: the envelope, or the raw body for rawPayload publishes. */
  data: Buffer;
  contentType: string | undefined;
  /** The publish metadata. */
  metadata: Record<string, string>;
  /** App id of the sidecar that published it. */
  publisherAppId: string;
  /** The envelope id, when the stored bytes are a CloudEvent. */
  eventId: string | undefined;
}

export class EmulatorState {
  readonly recorder: Recorder;
  readonly inFlight = new InFlight();
  readonly faults: Faults;
  readonly appClient: AppClient;
  readonly broker: Broker;
  private readonly stopController = new AbortController();

  constructor(
    readonly options: ResolvedOptions,
    closeConnections: () => void,
  ) {
    // Every held delivery, retry interval and slowed operation waits on this signal: no listener limit.
    setMaxListeners(0, this.stopController.signal);
    this.recorder = new Recorder(options.recordLimit);
    this.faults = new Faults({ closeConnections, stopSignal: this.stopController.signal });
    this.appClient = new AppClient(options.appTimeoutMs);
    this.broker = new Broker(this);
  }

  get stopSignal(): AbortSignal {
    return this.stopController.signal;
  }

  get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  /** Aborts every wait and cancels pending batches; in-flight work then winds down. */
  abort(): void {
    this.stopController.abort();
    this.broker.stop();
    this.appClient.close();
  }

  now(): Date {
    return new Date();
  }
}
