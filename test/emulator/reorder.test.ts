/**
 * faults.reorderDeliveries: deliveries held back (so that later messages overtake them) and late
 * duplicates of acked messages. No timing thresholds: the order is checked, not the time taken,
 * and waits that would be long are ended by reset() or stop().
 */
import assert from 'node:assert/strict';
import { EmulatorError, Faults } from '../../src/testing';
import { AppHandler, publish, ReceivedRequest, request, setup, sub, until } from './helpers';

const nOf = (r: ReceivedRequest): number => ((r.json as { data: { n: number } }).data).n;

/** Publishes events {n: 1..count} one after the other, each accepted before the next. */
async function publishInOrder(url: string, count: number): Promise<number[]> {
  const sent: number[] = [];
  for (let n = 1; n <= count; n++) {
    assert.equal((await publish(url, 'orders', { n })).status, 204);
    sent.push(n);
  }
  return sent;
}

type BulkRequest = { entries: Array<{ entryId: string; event: { data: { n: number } } }> };

/** A bulk subscriber that acks every entry. */
const ackAll: AppHandler = (req) => {
  const statuses = (req.json as BulkRequest).entries.map((e) => ({ entryId: e.entryId, status: 'SUCCESS' }));
  return { status: 200, body: JSON.stringify({ statuses }), contentType: 'application/json' };
};

describe('emulator: faults.reorderDeliveries', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  afterEach(async () => ctx?.close());

  it('holds deliveries back so that later messages overtake earlier ones; every message arrives once', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
    ctx.emu.faults.reorderDeliveries({ holdProbability: 1, maxHoldMs: 300, seed: 42 });
    const sent = await publishInOrder(ctx.emu.url, 20);
    await ctx.emu.idle();
    const received = ctx.app.received.map(nOf);
    assert.notDeepEqual(received, sent, 'received in the published order');
    assert.deepEqual([...received].sort((a, b) => a - b), sent);
    assert.deepEqual(
      ctx.emu.deliveries.map((d) => [d.outcome, d.attempt, d.late]),
      sent.map(() => ['SUCCESS', 1, undefined]),
    );
  });

  it('holds a message back before its first attempt, without holding back the messages behind it', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
    ctx.emu.faults.reorderDeliveries({ holdProbability: 1, maxHoldMs: 600_000, seed: 1 });
    await publish(ctx.emu.url, 'orders', { n: 1 });
    await until(() => ctx.emu.faults.heldForReorder === 1);
    // Only the first message is held: the next ones go straight to the app.
    ctx.emu.faults.reorderDeliveries(null);
    await publish(ctx.emu.url, 'orders', { n: 2 });
    await publish(ctx.emu.url, 'orders', { n: 3 });
    await ctx.app.waitFor(2);
    assert.deepEqual(ctx.app.received.map(nOf), [2, 3]);
    assert.equal(ctx.emu.faults.heldForReorder, 1);
    ctx.emu.faults.reset(); // ends the hold at once
    await ctx.emu.idle();
    assert.deepEqual(ctx.app.received.map(nOf), [2, 3, 1]);
    assert.equal(ctx.emu.faults.heldForReorder, 0);
  });

  it('the same seed makes the same choices, another seed others', () => {
    const faults = (): Faults => new Faults({ closeConnections: () => undefined, stopSignal: new AbortController().signal });
    const draws = (seed: number): Array<number | undefined> => {
      const f = faults();
      f.reorderDeliveries({ holdProbability: 0.5, maxHoldMs: 1000, lateRedeliveryProbability: 0.5, lateRedeliveryMs: 1000, seed });
      return Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? f.takeHold() : f.takeLateRedelivery()));
    };
    const first = draws(7);
    assert.deepEqual(draws(7), first);
    assert.notDeepEqual(draws(8), first);
    assert.ok(first.some((d) => d === undefined) && first.some((d) => d !== undefined), 'a probability of 0.5 holds some and not others');
    assert.ok(first.every((d) => d === undefined || (Number.isInteger(d) && d >= 0 && d <= 1000)));
  });

  it('delivers an acked message once more, after it was acked, as a late duplicate', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
    ctx.emu.faults.reorderDeliveries({ lateRedeliveryProbability: 1, lateRedeliveryMs: 20, seed: 3 });
    const sent = await publishInOrder(ctx.emu.url, 3);
    await ctx.emu.idle();
    assert.equal(ctx.emu.faults.pendingLateRedeliveries, 0);
    const received = ctx.app.received.map(nOf);
    assert.deepEqual([...received].sort(), [1, 1, 2, 2, 3, 3]);
    for (const n of sent) {
      const forN = ctx.app.received.filter((r) => nOf(r) === n);
      assert.deepEqual(forN[0]!.json, forN[1]!.json, 'the duplicate is the same event');
    }
    // Per message: the acked attempt, then the late one, recorded as a further attempt.
    const byMessage = new Map<string, Array<[string, number, boolean | undefined]>>();
    for (const d of ctx.emu.deliveries) byMessage.set(d.messageId, [...(byMessage.get(d.messageId) ?? []), [d.outcome, d.attempt, d.late]]);
    assert.equal(byMessage.size, 3);
    for (const records of byMessage.values()) {
      assert.deepEqual(records, [
        ['SUCCESS', 1, undefined],
        ['SUCCESS', 2, true],
      ]);
    }
    for (const d of ctx.emu.deliveries.filter((x) => x.late)) {
      const acked = ctx.emu.deliveries.find((x) => x.messageId === d.messageId && !x.late)!;
      assert.ok(ctx.emu.deliveries.indexOf(acked) < ctx.emu.deliveries.indexOf(d));
      assert.ok(acked.at.getTime() <= d.at.getTime());
    }
  });

  it('a late duplicate the app does not ack is retried under the resiliency policy, attempts counted on', async () => {
    const seen = new Map<number, number>();
    ctx = await setup({
      emulator: { resiliency: { retries: 2, intervalMs: 0 } },
      subscriptions: [sub('orders', '/orders')],
      // The first delivery is acked, the duplicate's first attempt asks for a retry.
      handler: (req) => {
        const count = (seen.get(nOf(req)) ?? 0) + 1;
        seen.set(nOf(req), count);
        return count === 2 ? { status: 200, body: '{"status":"RETRY"}', contentType: 'application/json' } : { status: 200 };
      },
    });
    ctx.emu.faults.reorderDeliveries({ lateRedeliveryProbability: 1, lateRedeliveryMs: 0 });
    await publish(ctx.emu.url, 'orders', { n: 1 });
    await ctx.emu.idle();
    assert.deepEqual(
      ctx.emu.deliveries.map((d) => [d.outcome, d.attempt, d.late]),
      [
        ['SUCCESS', 1, undefined],
        ['RETRY', 2, true],
        ['SUCCESS', 3, true],
      ],
    );
    assert.equal(ctx.app.received.length, 3);
  });

  it('bulk subscriptions: held messages join later batches, acked entries come back once in a later batch', async () => {
    const bulkSub = { pubsubname: 'pubsub', topic: 'orders', route: '/orders-bulk', bulkSubscribe: { enabled: true, maxMessagesCount: 100, maxAwaitDurationMs: 5 } };
    ctx = await setup({ subscriptions: [bulkSub], handler: ackAll });
    ctx.emu.faults.reorderDeliveries({ holdProbability: 1, maxHoldMs: 300, lateRedeliveryProbability: 1, lateRedeliveryMs: 50, seed: 11 });
    const sent = await publishInOrder(ctx.emu.url, 10);
    await ctx.emu.idle();
    const received = ctx.app.received.flatMap((r) => (r.json as BulkRequest).entries.map((e) => e.event.data.n));
    assert.deepEqual([...received].sort((a, b) => a - b), sent.flatMap((n) => [n, n]));
    const firsts = received.filter((n, i) => received.indexOf(n) === i);
    assert.notDeepEqual(firsts, sent, 'first deliveries in the published order');
    const late = ctx.emu.deliveries.filter((d) => d.late);
    assert.equal(late.length, 10);
    assert.ok(late.every((d) => d.bulk && d.attempt === 2 && d.outcome === 'SUCCESS'));
    assert.equal(ctx.emu.deliveries.filter((d) => !d.late && d.attempt === 1 && d.outcome === 'SUCCESS').length, 10);
  });

  it('is off by default, and null, {} or zero probabilities turn it off', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
    const off = async (): Promise<void> => {
      ctx.emu.clearRecords();
      ctx.app.received.length = 0;
      await publishInOrder(ctx.emu.url, 5);
      await ctx.emu.idle();
      assert.equal(ctx.app.received.length, 5);
      assert.ok(ctx.emu.deliveries.every((d) => d.late === undefined && d.attempt === 1));
    };
    await off();
    for (const setting of [null, {}, { holdProbability: 0, maxHoldMs: 100, lateRedeliveryProbability: 0, lateRedeliveryMs: 100, seed: 5 }]) {
      ctx.emu.faults.reorderDeliveries({ lateRedeliveryProbability: 1 });
      ctx.emu.faults.reorderDeliveries(setting);
      await off();
    }
    ctx.emu.faults.reorderDeliveries({ lateRedeliveryProbability: 1 });
    ctx.emu.faults.reset();
    await off();
  });

  it('refuses invalid options with EmulatorError INVALID_OPTION, naming the option', () => {
    const faults = new Faults({ closeConnections: () => undefined, stopSignal: new AbortController().signal });
    const invalid: Array<[unknown, RegExp]> = [
      [5, /reorderDeliveries\(options\) must be an object or null, got 5/],
      [[], /reorderDeliveries\(options\) must be an object or null/],
      [{ holdProbability: 1.5 }, /holdProbability must be a number from 0 to 1, got 1.5/],
      [{ holdProbability: -0.1 }, /holdProbability must be a number from 0 to 1/],
      [{ holdProbability: Number.NaN }, /holdProbability must be a number from 0 to 1, got NaN/],
      [{ lateRedeliveryProbability: '0.5' }, /lateRedeliveryProbability must be a number from 0 to 1, got "0.5"/],
      [{ maxHoldMs: -1 }, /maxHoldMs must be an integer >= 0, got -1/],
      [{ maxHoldMs: 1.5 }, /maxHoldMs must be an integer >= 0, got 1.5/],
      [{ lateRedeliveryMs: 'x' }, /lateRedeliveryMs must be an integer >= 0, got "x"/],
      [{ seed: -1 }, /seed must be an integer from 0 to 4294967295, got -1/],
      [{ seed: 2 ** 32 }, /seed must be an integer from 0 to 4294967295/],
      [{ holdProb: 1 }, /reorderDeliveries\(options\).holdProb is not an option/],
    ];
    for (const [value, message] of invalid) {
      assert.throws(
        () => faults.reorderDeliveries(value as never),
        (err: unknown) => err instanceof EmulatorError && err.code === 'INVALID_OPTION' && message.test(err.message),
        `accepted ${String(value)}`,
      );
    }
  });

  it('the admin route sets it, and refuses invalid options with a 400', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
    const faults = (body: unknown) => request(`${ctx.emu.url}/emulator/v1/faults`, { method: 'POST', body: JSON.stringify(body) });
    const refused = await faults({ reorderDeliveries: { holdProbability: 2 } });
    assert.equal(refused.status, 400);
    assert.match(refused.text, /INVALID_OPTION/);
    assert.equal((await faults({ reorderDeliveries: { lateRedeliveryProbability: 1, lateRedeliveryMs: 0 } })).status, 204);
    await publish(ctx.emu.url, 'orders', { n: 1 });
    await ctx.emu.idle();
    assert.deepEqual(ctx.app.received.map(nOf), [1, 1]);
    assert.equal((await faults({ reorderDeliveries: null })).status, 204);
    await publish(ctx.emu.url, 'orders', { n: 2 });
    await ctx.emu.idle();
    assert.deepEqual(ctx.app.received.map(nOf), [1, 1, 2]);
  });

  it('stop() does not wait for held deliveries or scheduled late duplicates', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
    ctx.emu.faults.reorderDeliveries({ lateRedeliveryProbability: 1, lateRedeliveryMs: 600_000, seed: 2 });
    await publish(ctx.emu.url, 'orders', { n: 1 });
    await until(() => ctx.emu.faults.pendingLateRedeliveries === 1);
    ctx.emu.faults.reorderDeliveries({ holdProbability: 1, maxHoldMs: 600_000, seed: 2 });
    await publishInOrder(ctx.emu.url, 3);
    await until(() => ctx.emu.faults.heldForReorder === 3);
    await ctx.emu.stop();
    assert.equal(ctx.emu.faults.heldForReorder, 0);
    assert.equal(ctx.emu.faults.pendingLateRedeliveries, 0);
    assert.deepEqual(ctx.app.received.map(nOf), [1]);
    assert.deepEqual(ctx.emu.deliveries.map((d) => [d.outcome, d.late]), [['SUCCESS', undefined]]);
  });
});
