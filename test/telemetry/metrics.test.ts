/**
 * The outbox's instruments, read with an in-memory metric reader after a known sequence:
 * publish, a failed send, the retry, the delivery, a duplicate delivery.
 */
import assert from 'node:assert/strict';
import { AggregationTemporality, MetricReader, type DataPoint, type Histogram, type MetricData } from '@opentelemetry/sdk-metrics';
import { DaprPublisher } from '../../src';
import { meteredOrdersService, OrderPlaced, postOrder, settle } from './helpers';

/** A reader that keeps nothing: each collect() reads the instruments now. */
class InMemoryReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}

  async read(): Promise<Map<string, MetricData>> {
    const { resourceMetrics, errors } = await this.collect();
    assert.deepEqual(errors, []);
    const out = new Map<string, MetricData>();
    for (const scope of resourceMetrics.scopeMetrics) for (const m of scope.metrics) out.set(m.descriptor.name, m);
    return out;
  }
}

/** Data points as `attributes -> value` ('' for no attributes), without the attributes every point has. */
function points<T>(data: MetricData | undefined, value: (p: DataPoint<unknown>) => T, keys: string[]): Record<string, T> {
  assert.ok(data, 'the metric was recorded');
  const out: Record<string, T> = {};
  for (const p of data.dataPoints as Array<DataPoint<unknown>>) {
    const label = keys.filter((k) => p.attributes[k] !== undefined).map((k) => `${k}=${String(p.attributes[k])}`).join(',');
    out[label] = value(p);
  }
  return out;
}
const numbers = (data: MetricData | undefined, ...keys: string[]) => points(data, (p) => p.value as number, keys);
const counts = (data: MetricData | undefined, ...keys: string[]) => points(data, (p) => (p.value as Histogram).count, keys);

describe('telemetry: metrics (in-memory metric reader, through the emulator)', () => {
  const reader = new InMemoryReader();
  const suite = meteredOrdersService(() => reader);

  it('publish, fail, retry, deliver, duplicate: each instrument counts what happened', async () => {
    const { service } = suite;
    service.emu.faults.failNextPublishes(1);
    const eventId = await postOrder(service, 'o-1');
    await settle(service);
    assert.equal(await service.Effect.count(), 0, 'the first send failed');
    await service.outbox.runPass('retry-by-local-queue');
    await settle(service);
    assert.equal(await service.Effect.count(), 1, 'the retry was delivered');
    // The same event once more (same CloudEvent id): the inbox answers it as a duplicate.
    const again = new DaprPublisher({ daprPort: service.emu.port });
    await again.publish({ id: eventId, topic: 'OrderPlaced', pubsubName: 'pubsub', eventTypeName: 'OrderPlaced', content: JSON.stringify(new OrderPlaced('o-1')), creationTime: Date.now() });
    await again.close();
    await settle(service);
    assert.equal(await service.Effect.count(), 1, 'the duplicate had no effect');

    let reads = 0;
    const overview = service.outbox.overview.bind(service.outbox);
    service.outbox.overview = () => {
      reads++;
      return overview();
    };
    const m = await reader.read();
    // Every data point names the system, topic and pubsub; none names a message.
    for (const name of ['messaging.client.sent.messages', 'messaging.client.operation.duration', 'messaging.client.consumed.messages', 'messaging.process.duration']) {
      for (const p of m.get(name)!.dataPoints) {
        assert.equal(p.attributes['messaging.system'], 'dapr');
        assert.equal(p.attributes['messaging.destination.name'], 'OrderPlaced');
        assert.equal(p.attributes['dapr.pubsub.name'], 'pubsub');
        assert.equal(p.attributes['messaging.message.id'], undefined);
      }
    }

    assert.deepEqual(numbers(m.get('messaging.client.sent.messages'), 'messaging.operation.name', 'error.type'), {
      'messaging.operation.name=send,error.type=PublishError': 1,
      'messaging.operation.name=send': 1,
    });
    assert.deepEqual(counts(m.get('messaging.client.operation.duration'), 'error.type'), { 'error.type=PublishError': 1, '': 1 });
    assert.equal(m.get('messaging.client.operation.duration')!.descriptor.unit, 's');
    assert.deepEqual(numbers(m.get('messaging.client.consumed.messages'), 'messaging.operation.name', 'messaging.consumer.group.name', 'error.type'), {
      'messaging.operation.name=process,messaging.consumer.group.name=pubsub/OrderPlaced': 1,
    });
    assert.deepEqual(counts(m.get('messaging.process.duration'), 'error.type'), { '': 1 });
    assert.deepEqual(numbers(m.get('outbox.inbox.duplicates'), 'messaging.consumer.group.name'), { 'messaging.consumer.group.name=pubsub/OrderPlaced': 1 });

    assert.deepEqual(numbers(m.get('outbox.messages'), 'outbox.state'), {
      'outbox.state=not_published': 0,
      'outbox.state=in_progress': 0,
      'outbox.state=published': 1,
      'outbox.state=published_failed': 0,
      'outbox.state=terminal_failed': 0,
    });
    assert.deepEqual(numbers(m.get('outbox.oldest_pending.age')), { '': 0 });
    assert.deepEqual(numbers(m.get('outbox.terminal_failures')), { '': 0 });
    assert.deepEqual(numbers(m.get('outbox.inbox.size')), { '': 1 });

    // A second collection (a second scrape) within overviewCacheTime reads nothing more.
    const second = await reader.read();
    assert.deepEqual(numbers(second.get('outbox.inbox.size')), { '': 1 });
    assert.equal(reads, 1);
  });
});
