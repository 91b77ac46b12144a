/**
 * Spans through the whole path, with the SDK's in-memory exporter: a request publishes, the
 * outbox sends through the emulator, the router runs the subscriber's handler.
 */
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createTestDb, type TestDb } from '../support/db';
import { postOrder, settle, startOrdersService, type OrdersService } from './helpers';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const REQUEST = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

describe('telemetry: traces (in-memory span exporter, through the emulator)', () => {
  let db: TestDb;
  let service: OrdersService;
  let exporter: InMemorySpanExporter;
  let provider: BasicTracerProvider;

  beforeEach(async () => {
    exporter = new InMemorySpanExporter();
    provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    assert.equal(trace.setGlobalTracerProvider(provider), true);
    db = await createTestDb('sqlite');
    service = await startOrdersService(db);
  });
  afterEach(async () => {
    await service.close();
    await db.close();
    trace.disable();
    await provider.shutdown();
  });

  const spans = (name: string): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.name === name);
  const one = (name: string): ReadableSpan => {
    const found = spans(name);
    assert.equal(found.length, 1, `one span '${name}', got ${exporter.getFinishedSpans().map((s) => s.name).join(', ')}`);
    return found[0]!;
  };

  it('one request: create (child of the request) -> send (linked to it) -> process (its child, same trace)', async () => {
    const eventId = await postOrder(service, 'o-1', 'record', { traceparent: REQUEST });
    await settle(service);

    const create = one('create OrderPlaced');
    assert.equal(create.kind, SpanKind.PRODUCER);
    assert.equal(create.spanContext().traceId, TRACE_ID);
    assert.equal(create.parentSpanContext?.spanId, '00f067aa0ba902b7');
    assert.deepEqual(
      { ...create.attributes },
      {
        'messaging.system': 'dapr',
        'messaging.operation.name': 'create',
        'messaging.operation.type': 'create',
        'messaging.destination.name': 'OrderPlaced',
        'messaging.message.id': eventId,
        'dapr.pubsub.name': 'pubsub',
      },
    );
    // The row stores the create span's context: the CloudEvent carries it to the subscriber.
    const published = service.emu.publishes.find((p) => p.topic === 'OrderPlaced');
    assert.equal(published?.envelope?.traceparent, `00-${TRACE_ID}-${create.spanContext().spanId}-01`);

    const send = one('send OrderPlaced');
    assert.equal(send.kind, SpanKind.CLIENT);
    assert.equal(send.parentSpanContext, undefined, 'a send span starts its own trace');
    assert.deepEqual(send.links.map((l) => l.context.spanId), [create.spanContext().spanId]);
    assert.equal(send.links[0]!.context.traceId, TRACE_ID);
    assert.equal(send.attributes['messaging.operation.name'], 'send');
    assert.equal(send.attributes['messaging.message.id'], eventId);
    assert.equal(send.status.code, SpanStatusCode.UNSET);

    const process = one('process OrderPlaced');
    assert.equal(process.kind, SpanKind.CONSUMER);
    assert.equal(process.spanContext().traceId, TRACE_ID);
    assert.equal(process.parentSpanContext?.spanId, create.spanContext().spanId);
    assert.equal(process.attributes['messaging.consumer.group.name'], 'pubsub/OrderPlaced');
    assert.equal(process.attributes['messaging.message.id'], eventId);
    assert.equal(process.status.code, SpanStatusCode.UNSET);
  });

  it('an event the handler publishes carries the handler\'s trace forward', async () => {
    await postOrder(service, 'o-2', 'ship', { traceparent: REQUEST });
    await settle(service);

    const processPlaced = one('process OrderPlaced');
    const createShipped = one('create OrderShipped');
    const processShipped = one('process OrderShipped');
    assert.equal(createShipped.parentSpanContext?.spanId, processPlaced.spanContext().spanId);
    assert.equal(processShipped.parentSpanContext?.spanId, createShipped.spanContext().spanId);
    for (const s of [processPlaced, createShipped, processShipped]) assert.equal(s.spanContext().traceId, TRACE_ID);
    assert.deepEqual(one('send OrderShipped').links.map((l) => l.context.spanId), [createShipped.spanContext().spanId]);
  });

  it('a handler that throws: the process span has an error status and error.type', async () => {
    await postOrder(service, 'o-3', 'throw');
    await settle(service);
    const failed = spans('process OrderPlaced');
    assert.ok(failed.length >= 1);
    assert.equal(failed[0]!.status.code, SpanStatusCode.ERROR);
    assert.equal(failed[0]!.attributes['error.type'], 'TypeError');
    assert.equal(failed[0]!.events[0]?.name, 'exception');
    // With no traceparent on the request, the create span began the trace the process span continues.
    const create = spans('create OrderPlaced')[0]!;
    assert.equal(create.parentSpanContext, undefined);
    assert.equal(failed[0]!.spanContext().traceId, create.spanContext().traceId);
  });

  it('a send that fails: error status, error.type, and the retry is a second send linked to the same create span', async () => {
    service.emu.faults.failNextPublishes(1);
    await postOrder(service, 'o-4');
    await settle(service);
    await service.outbox.runPass('retry-by-local-queue');
    await settle(service);
    const sends = spans('send OrderPlaced');
    assert.equal(sends.length, 2);
    assert.equal(sends[0]!.status.code, SpanStatusCode.ERROR);
    assert.equal(sends[0]!.attributes['error.type'], 'PublishError');
    assert.equal(sends[1]!.status.code, SpanStatusCode.UNSET);
    const createId = one('create OrderPlaced').spanContext().spanId;
    for (const s of sends) assert.deepEqual(s.links.map((l) => l.context.spanId), [createId]);
  });
});
