/**
 * Contract section 1, bulk publish: validation, 204, and 500 with failedEntries.
 */
import assert from 'node:assert/strict';
import { DaprEmulator } from '../../src/testing';
import { request, RawResponse } from './helpers';

function bulk(emu: DaprEmulator, topic: string, body: unknown, opts: { prefix?: string; query?: string } = {}): Promise<RawResponse> {
  const prefix = opts.prefix ?? 'v1.0-alpha1';
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return request(`${emu.url}/${prefix}/publish/bulk/pubsub/${topic}${opts.query ? `?${opts.query}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: text,
  });
}

function errorOf(res: RawResponse): { errorCode: string; message: string } {
  return JSON.parse(res.text) as { errorCode: string; message: string };
}

describe('emulator: bulk publish', () => {
  let emu: DaprEmulator;
  beforeEach(async () => {
    emu = await DaprEmulator.start({ appId: 'bulk-app' });
  });
  afterEach(async () => emu.stop());

  const entries = [
    { entryId: '1', event: { a: 1 }, contentType: 'application/json' },
    { entryId: '2', event: 'hello', contentType: 'text/plain' },
    { entryId: '3', event: Buffer.from('bin').toString('base64'), contentType: 'application/octet-stream' },
    { entryId: '4', event: { id: 'ce-4', type: 't', data: 4 }, contentType: 'application/cloudevents+json' },
    { entryId: '5', event: '<x/>', contentType: 'application/xml', metadata: { 'cloudevent.id': 'pinned-5' } },
  ];

  it('all published: 204; each entry is wrapped exactly as a single publish', async () => {
    const res = await bulk(emu, 'orders', entries);
    assert.equal(res.status, 204);
    assert.equal(res.body.length, 0);
    assert.equal(emu.publishes.length, 5);
    const [json, text, bin, ce, xml] = emu.publishes.map((p) => p.envelope!);
    assert.deepEqual(json!.data, { a: 1 });
    assert.equal(json!.datacontenttype, 'application/json');
    assert.equal(json!.source, 'bulk-app');
    assert.equal(json!.topic, 'orders');
    assert.equal(text!.data, 'hello');
    assert.equal(bin!.data_base64, Buffer.from('bin').toString('base64'));
    assert.equal(ce!.id, 'ce-4');
    assert.equal(ce!.data, 4);
    assert.equal(xml!.id, 'pinned-5');
    assert.deepEqual(
      emu.publishes.map((p) => [p.bulk, p.entryId, p.status, p.accepted]),
      entries.map((e) => [true, e.entryId, 204, true]),
    );
  });

  it('is also served under /v1.0, and accepts the JS SDK spelling "entryID"', async () => {
    const res = await bulk(emu, 'orders', [{ entryID: 'x', event: {}, contentType: 'application/json', metadata: {} }], { prefix: 'v1.0' });
    assert.equal(res.status, 204);
    assert.equal(emu.publishes[0]!.entryId, 'x');
  });

  it('request-level metadata applies to entries with a metadata object; rawPayload=true stores the bytes as they are', async () => {
    await bulk(emu, 't', [{ entryId: '1', event: 'plain', contentType: 'text/plain', metadata: {} }], { query: 'metadata.ttlInSeconds=30' });
    assert.ok(typeof emu.publishes[0]!.envelope!.expiration === 'string');
    await bulk(emu, 't', [{ entryId: '1', event: 'raw!', contentType: 'text/plain' }], { query: 'metadata.rawPayload=true' });
    assert.equal(emu.publishes[1]!.envelope, undefined);
    assert.equal(emu.publishes[1]!.body.toString(), 'raw!');
  });

  describe('validation', () => {
    it('malformed JSON: 400 ERR_PUBSUB_EVENTS_SER', async () => {
      const res = await bulk(emu, 't', '[{"entryId":');
      assert.equal(res.status, 400);
      assert.equal(errorOf(res).errorCode, 'ERR_PUBSUB_EVENTS_SER');
      assert.match(errorOf(res).message, /^error when unmarshaling the request for topic t pubsub pubsub: /);
      assert.equal((await bulk(emu, 't', { entryId: '1' })).status, 400);
    });

    it('missing entryId: 400 ERR_PUBSUB_EVENTS_SER', async () => {
      const res = await bulk(emu, 't', [{ event: {}, contentType: 'application/json' }]);
      assert.equal(res.status, 400);
      assert.equal(errorOf(res).errorCode, 'ERR_PUBSUB_EVENTS_SER');
      assert.equal(
        errorOf(res).message,
        'error marshaling events to bytes for topic t pubsub pubsub. error: entryId is duplicated or not present for entry',
      );
    });

    it('duplicate entryId: 400 ERR_PUBSUB_EVENTS_SER, nothing published', async () => {
      const res = await bulk(emu, 't', [
        { entryId: 'a', event: {}, contentType: 'application/json' },
        { entryId: 'a', event: {}, contentType: 'application/json' },
      ]);
      assert.equal(res.status, 400);
      assert.equal(errorOf(res).errorCode, 'ERR_PUBSUB_EVENTS_SER');
      assert.equal(emu.publishes.filter((p) => p.accepted).length, 0);
    });

    it('an event that does not fit its contentType, or an unknown contentType: 400', async () => {
      const cases = [
        { entryId: '1', event: { a: 1 }, contentType: 'text/plain' },
        { entryId: '1', event: 5, contentType: 'application/octet-stream' },
        { entryId: '1', event: 'not base64!', contentType: 'application/octet-stream' },
        { entryId: '1', event: 'x', contentType: 'image/png' },
        { entryId: '1', event: 'x' },
      ];
      for (const entry of cases) {
        const res = await bulk(emu, 't', [entry]);
        assert.equal(res.status, 400, JSON.stringify(entry));
        assert.equal(errorOf(res).errorCode, 'ERR_PUBSUB_EVENTS_SER');
        assert.match(errorOf(res).message, /^error when marshalling cloud event envelope for topic t pubsub pubsub: error: /);
      }
    });

    it('unknown pubsub and bad metadata answer as for a single publish', async () => {
      const unknown = await request(`${emu.url}/v1.0-alpha1/publish/bulk/nope/t`, { method: 'POST', body: '[]' });
      assert.equal(unknown.status, 404);
      assert.equal(errorOf(unknown).errorCode, 'ERR_PUBSUB_NOT_FOUND');
      const badMeta = await bulk(emu, 't', [], { query: 'metadata.rawPayload=nope' });
      assert.equal(badMeta.status, 400);
      assert.equal(errorOf(badMeta).errorCode, 'ERR_PUBSUB_REQUEST_METADATA');
    });

    it('an empty array publishes nothing: 204', async () => {
      assert.equal((await bulk(emu, 't', [])).status, 204);
    });
  });

  it('partial failure: 500 {"failedEntries":[{"entryId","error"}],"errorCode"}; entries not listed were published', async () => {
    emu.faults.failNextPublishes(2, { error: 'broker down' });
    const res = await bulk(emu, 'orders', entries.slice(0, 3));
    assert.equal(res.status, 500);
    assert.equal(
      res.text,
      '{"failedEntries":[{"entryId":"1","error":"broker down"},{"entryId":"2","error":"broker down"}],"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}',
    );
    assert.deepEqual(
      emu.publishes.map((p) => [p.entryId, p.accepted, p.status]),
      [
        ['1', false, 500],
        ['2', false, 500],
        ['3', true, 500],
      ],
    );
  });

  it('a publishing scope violation rejects the whole request: 403', async () => {
    await emu.stop();
    emu = await DaprEmulator.start({ appId: 'a', scopes: { publishingScopes: { a: [] } } });
    const res = await bulk(emu, 't', [{ entryId: '1', event: {}, contentType: 'application/json' }]);
    assert.equal(res.status, 403);
    assert.equal(errorOf(res).errorCode, 'ERR_PUBSUB_FORBIDDEN');
  });
});
