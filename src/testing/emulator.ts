/**
 * DaprEmulator: the public facade. It owns the shared core (broker, records, faults), the
 * default sidecar and any added sidecars, and hands each call to the part that does the work.
 */
import type { AdminApi } from './admin-routes';
import { AttachedApp } from './broker';
import { EmulatorState } from './emulator-state';
import { EmulatorError } from './errors';
import { Faults } from './faults';
import { checkAppId, checkAppUrl, checkNonEmptyString, checkPort, DaprEmulatorOptions, isTopicAllowed, resolveOptions } from './options';
import { DeadLetterRecord, DeliveryRecord, DroppedRecord, PublishRecord, RequestRecord } from './records';
import { SidecarServer } from './sidecar-server';
import { discoverSubscriptions, publicView, Subscription } from './subscriptions';

export interface AttachAppOptions {
  /** The app's id; one consumer group per app id. Attaching an id again replaces its subscriptions. */
  appId: string;
  /** Base URL of the app, e.g. 'http://127.0.0.1:3000'. */
  appUrl: string;
  /** APP_API_TOKEN for this app. Default: the emulator's `appApiToken`. */
  appApiToken?: string;
}

export interface AddSidecarOptions {
  /** App id of the new sidecar: the `source` of what is published through it. */
  appId: string;
  /** When set, this app is attached (discovered) as `appId`. */
  appUrl?: string;
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** DAPR_API_TOKEN of this sidecar. Default: the emulator's `apiToken`. */
  apiToken?: string;
}

/** A running sidecar. `String(sidecar)` is its URL. */
export interface SidecarInfo {
  readonly appId: string;
  readonly url: string;
  readonly port: number;
  toString(): string;
}

/**
 * A Dapr sidecar emulator: daprd's pubsub HTTP API over an in-memory broker.
 *
 * @example
 * const emu = await DaprEmulator.start({ appId: 'orders' });
 * await emu.attachApp({ appId: 'billing', appUrl: 'http://127.0.0.1:3001' });
 * await fetch(`${emu.url}/v1.0/publish/pubsub/orders`, { method: 'POST', body: '{"a":1}',
 *   headers: { 'content-type': 'application/json' } });
 * await emu.idle();
 * console.log(emu.deliveries);
 * await emu.stop();
 */
export class DaprEmulator {
  private readonly core: EmulatorState;
  private readonly servers: SidecarServer[] = [];
  private readonly adminApi: AdminApi;
  private stopping: Promise<void> | undefined;

  private constructor(options: DaprEmulatorOptions) {
    const resolved = resolveOptions(options);
    this.core = new EmulatorState(resolved, () => this.closeConnections());
    this.adminApi = {
      attachApp: (o) => this.attachApp(o),
      detachApp: (id) => this.detachApp(id),
      addSidecar: (o) => this.addSidecar(o),
      idle: () => this.idle(),
      faults: this.core.faults,
      recorder: this.core.recorder,
      apps: () => this.core.broker.allApps().map((a) => ({ appId: a.appId, appUrl: a.appUrl, subscriptions: a.subscriptions.map(publicView) })),
    };
  }

  /** Starts the default sidecar (and attaches `appUrl` when given). */
  static async start(options: DaprEmulatorOptions = {}): Promise<DaprEmulator> {
    const emu = new DaprEmulator(options);
    const o = emu.core.options;
    try {
      await emu.listenSidecar(o.appId, o.port, o.apiToken);
      if (o.appUrl !== undefined) await emu.attachApp({ appId: o.appId, appUrl: o.appUrl });
    } catch (err) {
      await emu.stop();
      throw err;
    }
    return emu;
  }

  /** URL of the default sidecar, e.g. 'http://127.0.0.1:3500'. */
  get url(): string {
    return this.sidecarUrl(this.servers[0]!);
  }

  /** Port of the default sidecar. */
  get port(): number {
    return this.servers[0]!.port;
  }

  /** App id of the default sidecar. */
  get appId(): string {
    return this.core.options.appId;
  }

  get faults(): Faults {
    return this.core.faults;
  }

  /** Every HTTP request a sidecar answered. */
  get requests(): readonly RequestRecord[] {
    return this.core.recorder.requests;
  }

  /** Every publish (one per bulk entry), with the status answered and the stored bytes. */
  get publishes(): readonly PublishRecord[] {
    return this.core.recorder.publishes;
  }

  /** Every delivery attempt with its outcome. */
  get deliveries(): readonly DeliveryRecord[] {
    return this.core.recorder.deliveries;
  }

  /** Messages sent to a dead-letter topic. */
  get deadLetters(): readonly DeadLetterRecord[] {
    return this.core.recorder.deadLetters;
  }

  /** Messages given up on: retries (and redeliveries) ran out and no dead-letter topic was set. */
  get dropped(): readonly DroppedRecord[] {
    return this.core.recorder.dropped;
  }

  /** Every running sidecar, the default one first. */
  get sidecars(): SidecarInfo[] {
    return this.servers.map((s) => this.info(s));
  }

  /** Empties every record array. */
  clearRecords(): void {
    this.core.recorder.clear();
  }

  /**
   * Calls the app's GET /dapr/subscribe and registers its subscriptions; the app becomes one
   * consumer group. Returns the subscriptions discovered. Throws EmulatorError when the app
   * cannot be reached or answers something daprd could not read, or a `match` is unsupported.
   */
  async attachApp(opts: AttachAppOptions): Promise<Subscription[]> {
    this.assertRunning();
    if (opts === null || typeof opts !== 'object') throw EmulatorError.invalidOption('attachApp(options)', opts, 'must be an object');
    checkAppId('appId', opts.appId);
    checkAppUrl('appUrl', opts.appUrl);
    if (opts.appApiToken !== undefined) checkNonEmptyString('appApiToken', opts.appApiToken);
    const app: AttachedApp = {
      appId: opts.appId,
      appUrl: opts.appUrl,
      appApiToken: opts.appApiToken ?? this.core.options.appApiToken,
      subscriptions: [],
    };
    const found = await discoverSubscriptions(this.core.appClient, app);
    const { logger, pubsubs, scopes } = this.core.options;
    for (const warning of found.warnings) logger.warn(`app ${app.appId}: ${warning}`);
    const seen = new Set<string>();
    for (const sub of found.subscriptions) {
      const key = `${sub.pubsubName}\u0000${sub.topic}`;
      if (!pubsubs.includes(sub.pubsubName)) logger.warn(`app ${app.appId}: pubsub ${sub.pubsubName} not found; subscription to ${sub.topic} ignored`);
      else if (!isTopicAllowed(scopes, 'subscribe', app.appId, sub.topic)) {
        logger.warn(`app ${app.appId}: subscription to topic '${sub.topic}' on pubsub '${sub.pubsubName}' is not allowed`);
      } else if (seen.has(key)) logger.warn(`app ${app.appId}: duplicate subscription to ${sub.topic} on ${sub.pubsubName} ignored`);
      else {
        seen.add(key);
        app.subscriptions.push(sub);
      }
    }
    this.assertRunning();
    this.core.broker.attach(app);
    logger.info(`app ${app.appId} attached at ${app.appUrl} with ${app.subscriptions.length} subscription(s)`);
    return app.subscriptions.map(publicView);
  }

  /** Stops delivering to an app (its pending bulk batch is sent first). */
  detachApp(appId: string): void {
    this.core.broker.detach(appId);
  }

  /**
   * Starts another sidecar on its own port, sharing this emulator's broker: what an app
   * publishes through it carries `source: appId`. Attaches `appUrl` when given.
   */
  async addSidecar(opts: AddSidecarOptions): Promise<SidecarInfo> {
    this.assertRunning();
    if (opts === null || typeof opts !== 'object') throw EmulatorError.invalidOption('addSidecar(options)', opts, 'must be an object');
    checkAppId('appId', opts.appId);
    if (this.servers.some((s) => s.appId === opts.appId)) {
      throw EmulatorError.invalidOption('appId', opts.appId, 'must not be the app id of a running sidecar');
    }
    const port = opts.port ?? 0;
    checkPort('port', port);
    if (opts.appUrl !== undefined) checkAppUrl('appUrl', opts.appUrl);
    if (opts.apiToken !== undefined) checkNonEmptyString('apiToken', opts.apiToken);
    const server = await this.listenSidecar(opts.appId, port, opts.apiToken ?? this.core.options.apiToken);
    if (opts.appUrl !== undefined) await this.attachApp({ appId: opts.appId, appUrl: opts.appUrl });
    return this.info(server);
  }

  /** Resolves when no publish, delivery, pending bulk batch or scheduled retry is in flight. */
  idle(): Promise<void> {
    return this.core.inFlight.idle();
  }

  /** Closes every server and socket, cancels timers and waits for in-flight work to wind down. Idempotent. */
  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.core.abort();
    await Promise.all(this.servers.map((s) => s.close()));
    await this.core.inFlight.idle();
  }

  private async listenSidecar(appId: string, port: number, apiToken: string | undefined): Promise<SidecarServer> {
    const server = new SidecarServer(this.core, this.adminApi, appId, apiToken);
    await server.listen(this.core.options.host, port);
    this.servers.push(server);
    if (this.core.stopped) await server.close();
    return server;
  }

  private closeConnections(): void {
    for (const server of this.servers) server.destroySockets();
    this.core.appClient.destroySockets();
  }

  private assertRunning(): void {
    if (this.core.stopped) throw new EmulatorError('NOT_RUNNING', 'the emulator is stopped');
  }

  private sidecarUrl(server: SidecarServer): string {
    const host = this.core.options.host.includes(':') ? `[${this.core.options.host}]` : this.core.options.host;
    return `http://${host}:${server.port}`;
  }

  private info(server: SidecarServer): SidecarInfo {
    const url = this.sidecarUrl(server);
    return { appId: server.appId, url, port: server.port, toString: () => url };
  }
}
