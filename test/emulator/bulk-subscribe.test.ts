/**
 * Contract section 3, bulk subscribe: the request format and how per-entry statuses and whole
 * answers are read (one test per rule of the contract's bulk paragraph).
 */
import assert from 'node:assert/strict';
import { AppHandler, keysOf, publish, ReceivedRequest, request, setup } from './helpers';

type BulkRequest = {
  id: string;
  type: string;
  topic: string;
  pubsubname: string;
  metadata: Record<string, string>;
  entries: Array<{ entryId: string; event: unknown; metadata: Record<string, string>; contentType: string }>;
};

const bulkSub = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  pubsubname: 'pubsub',
  topic: 'orders',
  route: '/orders-bulk',
  bulkSubscribe: { enabled: true, maxMessagesCount: 3, maxAwaitDurationMs: 60000 },
  ...extra,
});

/** Publishes `n` events in one bulk request (so they reach the batch together). */
async function publishBatch(url: string, n: number, query = ''): Promise<void> {
  const entries = Array.from({ length: n }, (_, i) => ({ entryId: `e${i}`, event: { n: i }, contentType: 'application/json' }));
  const res = await request(`${url}/v1.0-alpha1/publish/bulk/pubsub/orders${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(entries),
  });
  assert.equal(res.status, 204);
}

const bodyOf = (r: ReceivedRequest): BulkRequest => r.json as BulkRequest;

/** Answers each entry with the status its event's `n` maps to. */
const statusesBy =
  (byN: Record<number, string | undefined>): AppHandler =>
  (req) => {
    const statuses = bodyOf(req)
      .entries.filter((e) => byN[(e.event as { data: { n: number } }).data.n] !== undefined)
      .map((e) => ({ entryId: e.entryId, status: byN[(e.event as { data: { n: number } }).data.n] }));
    return { status: 200, body: JSON.stringify({ statuses }), contentType: 'application/json' };
  };

describe('emulator: bulk subscribe', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  afterEach(async () => ctx?.close());

  it('sends one application/json request per batch, in the contract format', async () => {
    ctx = await setup({ subscriptions: [bulkSub()], handler: statusesBy({ 0: 'SUCCESS', 1: 'SUCCESS', 2: 'SUCCESS' }) });
    await publishBatch(ctx.emu.url, 3);
    await ctx.emu.idle();
    assert.equal(ctx.app.received.length, 1);
    const req = ctx.app.received[0]!;
    assert.equal(req.path, '/orders-bulk');
    assert.equal(req.headers['content-type'], 'application/json');
    assert.equal(req.headers.pubsubname, 'pubsub');
    assert.deepEqual(keysOf(req.body.toString()), ['entries', 'id', 'metadata', 'pubsubname', 'topic', 'type']);
    const body = bodyOf(req);
    assert.equal(body.type, 'com.dapr.event.sent.bulk');
    assert.equal(body.topic, 'orders');
    assert.equal(body.pubsubname, 'pubsub');
    assert.match(body.id, /^[0-9a-f-]{36}$/);
    assert.equal(body.entries.length, 3);
    for (const [i, entry] of body.entries.entries()) {
      assert.deepEqual(Object.keys(entry), ['entryId', 'event', 'metadata', 'contentType']);
      assert.equal(entry.contentType, 'application/cloudevents+json');
      assert.deepEqual(entry.metadata, {});
      const event = entry.event as Record<string, unknown>;
      assert.deepEqual(event.data, { n: i });
      assert.equal(event.id, ctx.emu.publishes[i]!.envelope!.id);
    }
    assert.deepEqual(ctx.emu.deliveries.map((d) => [d.bulk, d.outcome, d.attempt]), [
      [true, 'SUCCESS', 1],
      [true, 'SUCCESS', 1],
      [true, 'SUCCESS', 1],
    ]);
    assert.deepEqual(ctx.emu.deliveries.map((d) => d.entryId), body.entries.map((e) => e.entryId));
  });

  it('flushes a partial batch after maxAwaitDurationMs', async () => {
    ctx = await setup({ subscriptions: [bulkSub({ bulkSubscribe: { enabled: true, maxMessagesCount: 100, maxAwaitDurationMs: 5 } })] });
    await publish(ctx.emu.url, 'orders', { n: 0 });
    await ctx.emu.idle();
    assert.equal(bodyOf(ctx.app.received[0]!).entries.length, 1);
  });

  it('per-entry statuses: SUCCESS acks, DROP drops (to the dead-letter topic when set), RETRY is resent alone', async () => {
    ctx = await setup({
      emulator: { resiliency: { retries: 1, intervalMs: 1 } },
      subscriptions: [bulkSub({ deadLetterTopic: 'poison' }), { pubsubname: 'pubsub', topic: 'poison', route: '/poison' }],
      handler: (req) => (req.path === '/poison' ? { status: 200 } : statusesBy({ 0: 'SUCCESS', 1: 'DROP', 2: 'RETRY' })(req)),
    });
    await publishBatch(ctx.emu.url, 3);
    await ctx.emu.idle();
    const bulkRequests = ctx.app.received.filter((r) => r.path === '/orders-bulk');
    assert.deepEqual(bulkRequests.map((r) => bodyOf(r).entries.map((e) => (e.event as { data: { n: number } }).data.n)), [[0, 1, 2], [2]]);
    const poison = ctx.app.received.filter((r) => r.path === '/poison');
    assert.equal(poison.length, 2); // the DROP, then the RETRY whose retries ran out
    assert.deepEqual(
      poison.map((r) => r.body.toString()).sort(),
      [ctx.emu.publishes[1]!.body.toString(), ctx.emu.publishes[2]!.body.toString()].sort(),
    );
  });

  it('a missing entry or an unknown status is retried', async () => {
    ctx = await setup({
      subscriptions: [bulkSub()],
      handler: statusesBy({ 0: 'SUCCESS', 1: 'success' }),
    });
    await publishBatch(ctx.emu.url, 3);
    await ctx.emu.idle();
    const outcomes = new Map(ctx.emu.deliveries.map((d) => [d.entryId, d.outcome]));
    const entries = bodyOf(ctx.app.received[0]!).entries;
    assert.equal(outcomes.get(entries[0]!.entryId), 'SUCCESS');
    assert.equal(outcomes.get(entries[1]!.entryId), 'RETRY');
    assert.equal(outcomes.get(entries[2]!.entryId), 'RETRY');
    assert.equal(ctx.emu.dropped.length, 2);
  });

  it('an invalid JSON answer retries every entry', async () => {
    ctx = await setup({ subscriptions: [bulkSub()], handler: () => ({ status: 200, body: 'not json' }) });
    await publishBatch(ctx.emu.url, 3);
    await ctx.emu.idle();
    assert.deepEqual(ctx.emu.deliveries.map((d) => d.outcome), ['RETRY', 'RETRY', 'RETRY']);
    assert.equal(ctx.emu.dropped.length, 3);
  });

  it('404 drops every entry (no dead letter)', async () => {
    ctx = await setup({ subscriptions: [bulkSub({ deadLetterTopic: 'poison' })], handler: () => ({ status: 404 }) });
    await publishBatch(ctx.emu.url, 3);
    await ctx.emu.idle();
    assert.deepEqual(ctx.emu.deliveries.map((d) => [d.outcome, d.httpStatus]), [
      ['DROP', 404],
      ['DROP', 404],
      ['DROP', 404],
    ]);
    assert.equal(ctx.emu.deadLetters.length, 0);
    assert.equal(ctx.emu.dropped.length, 0);
  });

  it('any other non-2xx retries every entry, under the resiliency policy', async () => {
    ctx = await setup({
      emulator: { resiliency: { retries: 2, intervalMs: 1 } },
      subscriptions: [bulkSub()],
      handler: () => ({ status: 503 }),
    });
    await publishBatch(ctx.emu.url, 3);
    await ctx.emu.idle();
    assert.equal(ctx.app.received.length, 3);
    assert.deepEqual(
      ctx.emu.deliveries.map((d) => d.attempt),
      [1, 1, 1, 2, 2, 2, 3, 3, 3],
    );
    assert.equal(ctx.emu.dropped.length, 3);
  });

  it('rawPayload: events are base64 strings of the broker bytes, contentType application/octet-stream', async () => {
    ctx = await setup({ subscriptions: [bulkSub({ metadata: { rawPayload: 'true' } })] });
    await publishBatch(ctx.emu.url, 3, '?metadata.rawPayload=true');
    await ctx.emu.idle();
    const body = bodyOf(ctx.app.received[0]!);
    assert.deepEqual(
      body.entries.map((e) => [e.contentType, Buffer.from(e.event as string, 'base64').toString()]),
      [0, 1, 2].map((n) => ['application/octet-stream', JSON.stringify({ n })]),
    );
    assert.deepEqual(body.entries[0]!.metadata, { rawPayload: 'true' });
  });

  it('entries are grouped by route', async () => {
    ctx = await setup({
      subscriptions: [
        bulkSub({ route: undefined, routes: { rules: [{ match: 'event.data.n == 1', path: '/one' }], default: '/rest' } }),
      ],
    });
    await publishBatch(ctx.emu.url, 3);
    await ctx.emu.idle();
    const byPath = Object.fromEntries(ctx.app.received.map((r) => [r.path, bodyOf(r).entries.length]));
    assert.deepEqual(byPath, { '/one': 1, '/rest': 2 });
  });
});
