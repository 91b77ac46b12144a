/**
 * A custom publisher: the outbox publishing to RabbitMQ directly instead of through Dapr, in the
 * way the MASA article swaps its IPublisher. Any transport fits by implementing `Publisher`.
 *
 * Each event goes to a topic exchange with the topic as routing key and the event id as
 * `messageId`, on a confirm channel: `publish()` resolves only once the broker confirmed.
 *
 * ```ts
 * const publisher = await RabbitMqPublisher.connect('amqp://guest:guest@127.0.0.1:5672');
 * const outbox = createOutbox({ sequelize, publisher });
 * ```
 */
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { BulkPublishResult, OutboxMessage, Publisher } from '../../src/extend'; // in your service: from 'dapr-outbox/extend'

export class RabbitMqPublisher implements Publisher {
  private constructor(
    private readonly connection: ChannelModel,
    private readonly channel: ConfirmChannel,
    readonly exchange: string,
  ) {}

  static async connect(url: string, exchange = 'integration-events'): Promise<RabbitMqPublisher> {
    const connection = await amqp.connect(url);
    const channel = await connection.createConfirmChannel();
    await channel.assertExchange(exchange, 'topic', { durable: true });
    return new RabbitMqPublisher(connection, channel, exchange);
  }

  publish(message: OutboxMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      this.channel.publish(this.exchange, message.topic, Buffer.from(message.content), this.properties(message), (err) =>
        err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
      );
    });
  }

  /** One confirm per message, all in flight at once: the failed ones are reported one by one. */
  async publishBulk(messages: readonly OutboxMessage[]): Promise<BulkPublishResult> {
    const results = await Promise.allSettled(messages.map((m) => this.publish(m)));
    return {
      failed: results.flatMap((r, i) => (r.status === 'rejected' ? [{ id: messages[i]!.id, error: r.reason as Error }] : [])),
    };
  }

  async close(): Promise<void> {
    await this.channel.close().catch(() => {});
    await this.connection.close().catch(() => {});
  }

  private properties(message: OutboxMessage) {
    return {
      messageId: message.id,
      type: message.eventTypeName,
      contentType: 'application/json',
      persistent: true,
      timestamp: Math.floor(message.creationTime / 1000),
      headers: message.traceparent ? { traceparent: message.traceparent } : {},
    };
  }
}
