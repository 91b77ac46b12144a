/**
 * Routing rules (v2 `routes`): the CEL subset, first match wins, then default; no match acks
 * the message silently (or dead-letters it); an evaluation error goes the error path.
 */
import assert from 'node:assert/strict';
import { publish, setup } from './helpers';

const routed = {
  pubsubname: 'pubsub',
  topic: 'things',
  routes: {
    rules: [
      { match: 'event.type == "widget"', path: '/widgets' },
      { match: "event.data.kind == 'gadget' || event.data.kind == 'gizmo'", path: '/gadgets' },
      { match: '(event.source != "legacy") && has(event.data.priority) && event.data.priority == 1', path: '/priority' },
      { match: 'has(event.data.flags) && event.data.flags.urgent == true && event.subject == "x"', path: '/urgent' },
      { match: 'event.data.ratio == 0.5 || event.data.note == null', path: '/numbers' },
    ],
    default: '/things',
  },
};

function ce(fields: Record<string, unknown>): string {
  return JSON.stringify({ specversion: '1.0', source: 'svc', type: 'thing', id: String(Math.random()), ...fields });
}

describe('emulator: routing rules (CEL subset)', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  afterEach(async () => ctx?.close());

  it('first matching rule wins, then the default route', async () => {
    ctx = await setup({ subscriptions: [routed] });
    const send = (body: string): Promise<unknown> =>
      publish(ctx.emu.url, 'things', body, { contentType: 'application/cloudevents+json' });
    await send(ce({ type: 'widget', data: { kind: 'gadget', note: 'a' } }));
    await send(ce({ data: { kind: 'gizmo', note: 'b' } }));
    await send(ce({ data: { kind: 'other', priority: 1, note: 'c' } }));
    await send(ce({ source: 'legacy', data: { kind: 'other', priority: 1, ratio: 0.5, note: 'd' } }));
    await send(ce({ subject: 'x', data: { kind: 'k', flags: { urgent: true }, note: 'e' } }));
    await send(ce({ data: { kind: 'k', ratio: 1, note: 'f' } }));
    await send(ce({ data: { kind: 'k', ratio: 1, note: null } }));
    await ctx.emu.idle();
    const byNote = new Map(ctx.app.received.map((r) => [(r.json as { data: { note: unknown } }).data.note, r.path]));
    assert.deepEqual(Object.fromEntries(byNote), {
      a: '/widgets',
      b: '/gadgets',
      c: '/priority',
      d: '/numbers',
      e: '/urgent',
      f: '/things',
      null: '/numbers',
    });
    assert.equal(ctx.emu.dropped.length, 0);
  });

  it('rules also see the envelope daprd built (event.type, event.data of a plain JSON publish)', async () => {
    ctx = await setup({
      subscriptions: [{ pubsubname: 'pubsub', topic: 't', routes: { rules: [{ match: 'event.data.kind == "a"', path: '/a' }], default: '/d' } }],
    });
    await publish(ctx.emu.url, 't', { kind: 'a' });
    await publish(ctx.emu.url, 't', { kind: 'b' });
    await ctx.emu.idle();
    assert.deepEqual(ctx.app.received.map((r) => r.path).sort(), ['/a', '/d']);
  });

  it('no rule matches and no default: acked silently, no HTTP call', async () => {
    ctx = await setup({
      subscriptions: [{ pubsubname: 'pubsub', topic: 't', routes: { rules: [{ match: 'event.type == "never"', path: '/never' }] } }],
    });
    await publish(ctx.emu.url, 't', {});
    await ctx.emu.idle();
    assert.equal(ctx.app.received.length, 0);
    assert.equal(ctx.emu.deliveries.length, 1);
    assert.equal(ctx.emu.deliveries[0]!.route, '');
    assert.equal(ctx.emu.deliveries[0]!.httpStatus, undefined);
    assert.equal(ctx.emu.dropped.length, 0);
    assert.equal(ctx.emu.deadLetters.length, 0);
  });

  it('no rule matches with a dead-letter topic: the message goes to the dead-letter topic', async () => {
    ctx = await setup({
      subscriptions: [
        { pubsubname: 'pubsub', topic: 't', deadLetterTopic: 'dlq', routes: { rules: [{ match: 'event.type == "never"', path: '/never' }] } },
        { pubsubname: 'pubsub', topic: 'dlq', route: '/dlq' },
      ],
    });
    await publish(ctx.emu.url, 't', {});
    await ctx.emu.idle();
    assert.deepEqual(ctx.app.received.map((r) => r.path), ['/dlq']);
    assert.deepEqual(ctx.app.received[0]!.body, ctx.emu.publishes[0]!.body);
  });

  it('an evaluation error (missing key) is not a match: dead-lettered (or given up on)', async () => {
    ctx = await setup({
      subscriptions: [
        { pubsubname: 'pubsub', topic: 't', deadLetterTopic: 'dlq', routes: { rules: [{ match: 'event.data.nope == 1', path: '/x' }], default: '/d' } },
        { pubsubname: 'pubsub', topic: 'dlq', route: '/dlq' },
      ],
    });
    await publish(ctx.emu.url, 't', { other: 1 });
    await ctx.emu.idle();
    assert.deepEqual(ctx.app.received.map((r) => r.path), ['/dlq']);
    assert.match(ctx.emu.deliveries[0]!.error!, /no such key: nope/);
  });

  it('&& and || ignore an error on the side that does not decide', async () => {
    ctx = await setup({
      subscriptions: [
        {
          pubsubname: 'pubsub',
          topic: 't',
          routes: { rules: [{ match: 'event.data.nope == 1 || event.data.kind == "a"', path: '/or' }], default: '/d' },
        },
      ],
    });
    await publish(ctx.emu.url, 't', { kind: 'a' });
    await ctx.emu.idle();
    assert.deepEqual(ctx.app.received.map((r) => r.path), ['/or']);
  });
});
