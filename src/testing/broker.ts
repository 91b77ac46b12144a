/**
 * The in-memory broker. Each attached app is one consumer group: a message goes to every app
 * with a subscription to its pubsub and topic, once per app. Like daprd's in-memory component
 * there is no persistence: an app only receives what is published after it attached.
 */
import { randomUUID } from 'node:crypto';
import { BulkBatcher } from './bulk-delivery';
import type { BrokerMessage, EmulatorState } from './emulator-state';
import { deliverSingle, type LateDelivery } from './delivery';
import { CompiledSubscription } from './subscriptions';

/** An app (consumer group) the sidecars deliver to. */
export interface AttachedApp {
  appId: string;
  appUrl: string;
  appApiToken: string | undefined;
  subscriptions: CompiledSubscription[];
}

export class Broker {
  private readonly apps = new Map<string, AttachedApp>();
  private readonly batchers = new Map<CompiledSubscription, BulkBatcher>();

  constructor(private readonly core: EmulatorState) {}

  /** Registers (or replaces) an app; a replaced app's pending bulk batches are delivered first. */
  attach(app: AttachedApp): void {
    this.detach(app.appId);
    this.apps.set(app.appId, app);
  }

  detach(appId: string): void {
    const old = this.apps.get(appId);
    if (!old) return;
    this.apps.delete(appId);
    for (const sub of old.subscriptions) {
      const batcher = this.batchers.get(sub);
      if (batcher) {
        batcher.flush();
        this.batchers.delete(sub);
      }
    }
  }

  app(appId: string): AttachedApp | undefined {
    return this.apps.get(appId);
  }

  allApps(): AttachedApp[] {
    return [...this.apps.values()];
  }

  /** Stores a message: starts one delivery per subscribed app. Tokens are taken before it returns. */
  publish(msg: BrokerMessage): void {
    if (this.core.stopped) return;
    for (const app of this.apps.values()) {
      const sub = app.subscriptions.find((s) => s.pubsubName === msg.pubsubName && s.topic === msg.topic);
      if (!sub) continue;
      if (sub.bulkSubscribe?.enabled) {
        const hold = this.core.faults.takeHold();
        if (hold === undefined) this.batcher(app, sub).add(msg);
        else {
          // Held back (reorderDeliveries): the message joins a later batch than its neighbours.
          this.core.inFlight.track(async () => {
            if ((await this.core.faults.hold(hold)) && this.apps.get(app.appId) === app) this.batcher(app, sub).add(msg);
          });
        }
      } else {
        this.core.inFlight.track(() => deliverSingle(this.core, app, sub, msg));
      }
    }
  }

  /**
   * reorderDeliveries: a message the app acked (on its attempt `attemptsBefore`) may be delivered
   * to it once more, later. The wait holds an in-flight token, so idle() waits for the duplicate;
   * stop() ends the wait.
   */
  redeliverLate(app: AttachedApp, sub: CompiledSubscription, msg: BrokerMessage, attemptsBefore: number): void {
    const delay = this.core.faults.takeLateRedelivery();
    if (delay === undefined) return;
    const late: LateDelivery = { attemptsBefore };
    this.core.inFlight.track(async () => {
      if (!(await this.core.faults.lateRedeliveryWait(delay))) return;
      // An app detached (or attached again) meanwhile no longer belongs to this consumer group.
      if (this.apps.get(app.appId) !== app) return;
      if (sub.bulkSubscribe?.enabled) this.batcher(app, sub).add(msg, late);
      else await deliverSingle(this.core, app, sub, msg, late);
    });
  }

  private batcher(app: AttachedApp, sub: CompiledSubscription): BulkBatcher {
    let batcher = this.batchers.get(sub);
    if (!batcher) {
      batcher = new BulkBatcher(this.core, app, sub);
      this.batchers.set(sub, batcher);
    }
    return batcher;
  }

  /** Publishes the original bytes to the subscription's dead-letter topic (same pubsub) and records it. */
  deadLetter(app: AttachedApp, sub: CompiledSubscription, msg: BrokerMessage, eventId: string | undefined, reason: string): void {
    const deadLetterTopic = sub.deadLetterTopic!;
    this.core.recorder.deadLetters.push({
      appId: app.appId,
      pubsubName: msg.pubsubName,
      topic: msg.topic,
      deadLetterTopic,
      eventId,
      messageId: msg.messageId,
      body: msg.data,
      reason,
      at: this.core.now(),
    });
    this.core.options.logger.warn(`app ${app.appId}: message ${eventId ?? msg.messageId} on ${msg.topic} sent to dead-letter topic ${deadLetterTopic}: ${reason}`);
    this.publish({
      ...msg,
      messageId: randomUUID(),
      topic: deadLetterTopic,
      publisherAppId: app.appId,
    });
  }

  /** Records a message given up on (no dead-letter topic, retries and redeliveries exhausted). */
  drop(app: AttachedApp, msg: BrokerMessage, eventId: string | undefined, reason: string): void {
    this.core.recorder.dropped.push({
      appId: app.appId,
      pubsubName: msg.pubsubName,
      topic: msg.topic,
      eventId,
      messageId: msg.messageId,
      body: msg.data,
      reason,
      at: this.core.now(),
    });
    this.core.options.logger.warn(`app ${app.appId}: message ${eventId ?? msg.messageId} on ${msg.topic} dropped: ${reason}`);
  }

  /** Cancels pending bulk batches (their messages are abandoned, as on a daprd shutdown). */
  stop(): void {
    for (const batcher of this.batchers.values()) batcher.cancel();
    this.batchers.clear();
  }
}
