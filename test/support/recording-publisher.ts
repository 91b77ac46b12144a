import type { BulkPublishResult, OutboxMessage, Publisher } from '../../src/ports/publisher';

/**
 * A Publisher that records what it is given, for tests of the core that do not need a sidecar.
 * `failNext(n)` makes the next n messages fail; `down = true` fails everything.
 */
export class RecordingPublisher implements Publisher {
  readonly pubsubName = 'pubsub';
  readonly messages: OutboxMessage[] = [];
  readonly bulkCalls: number[] = [];
  down = false;
  private failures = 0;
  private failWith: (m: OutboxMessage) => Error = (m) => new Error(`broker down for ${m.topic}`);

  failNext(n: number, error?: (m: OutboxMessage) => Error): void {
    this.failures = n;
    if (error) this.failWith = error;
  }

  async publish(message: OutboxMessage): Promise<void> {
    await Promise.resolve();
    if (this.down || this.failures > 0) {
      this.failures = Math.max(0, this.failures - 1);
      throw this.failWith(message);
    }
    this.messages.push(message);
  }

  async publishBulk(messages: readonly OutboxMessage[]): Promise<BulkPublishResult> {
    this.bulkCalls.push(messages.length);
    const failed: Array<{ id: string; error: Error }> = [];
    for (const m of messages) {
      try {
        await this.publish(m);
      } catch (error) {
        failed.push({ id: m.id, error: error as Error });
      }
    }
    return { failed };
  }

  ids(): string[] {
    return this.messages.map((m) => m.id);
  }
}
