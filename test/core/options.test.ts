import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sequelize } from 'sequelize';
import { createOutbox, DaprPublisher, EventValidationError, OutboxConfigError } from '../../src';
import { DEFAULTS, retryDelayMs } from '../../src/extend';
import { RecordingPublisher } from '../support/recording-publisher';
import { readRows } from '../support/rows';

describe('createOutbox options', () => {
  // Never opened: these tests only build outboxes.
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: join(tmpdir(), 'dapr-outbox-options-never-opened.db'), logging: false });
  after(() => sequelize.close());
  const publisher = new RecordingPublisher();

  it('keeps MASA\'s defaults, in seconds, except the claim size, chosen from measurements', () => {
    const outbox = createOutbox({ sequelize, publisher });
    assert.equal(outbox.tuning.localRetryTimes, 3);
    assert.equal(outbox.tuning.maxRetryTimes, 10);
    assert.equal(outbox.tuning.failedRetryInterval, 60);
    assert.equal(outbox.tuning.minimumRetryInterval, 60);
    assert.equal(outbox.tuning.localFailedRetryInterval, 3);
    assert.equal(outbox.tuning.retryBatchSize, 500);
    assert.equal(outbox.tuning.cleaningLocalQueueExpireInterval, 60);
    assert.equal(outbox.tuning.cleaningExpireInterval, 300);
    assert.equal(outbox.tuning.publishedExpireTime, 86400);
    assert.equal(outbox.tuning.deleteBatchCount, 1000);
    assert.equal(outbox.tuning.pubsubName, 'pubsub');
    assert.ok(outbox.tuning.maxBatchBytes < 4 * 1024 * 1024, 'bulk calls stay under the sidecar\'s 4 MiB request limit');
    assert.deepEqual(outbox.tuning, DEFAULTS);
  });

  const bad: Array<[string, Record<string, unknown>, string]> = [
    ['maxRetryTimes', { maxRetryTimes: -1 }, 'maxRetryTimes must be an integer >= 0, got -1'],
    ['retryBatchSize', { retryBatchSize: 1.5 }, 'retryBatchSize must be an integer >= 1, got 1.5'],
    ['leaseTime', { leaseTime: 0 }, 'leaseTime must be a number of seconds > 0, got 0'],
    ['failedRetryInterval', { failedRetryInterval: '60' }, 'failedRetryInterval must be a number of seconds > 0, got "60"'],
    ['bulk', { bulk: 'yes' }, 'bulk must be a boolean, got "yes"'],
    ['relayUnderRowLocks', { relayUnderRowLocks: 1 }, 'relayUnderRowLocks must be a boolean, got 1'],
    ['maxBatchBytes', { maxBatchBytes: 0 }, 'maxBatchBytes must be an integer >= 1, got 0'],
    ['pubsubName', { pubsubName: ' ' }, 'pubsubName must be a non-empty string, got " "'],
    ['maximumRetryInterval', { minimumRetryInterval: 60, maximumRetryInterval: 10 }, 'maximumRetryInterval must be >= minimumRetryInterval (60), got 10'],
    ['tables', { tables: { outbox: 'drop table;' } }, 'tables.outbox must be an identifier'],
  ];
  for (const [option, given, message] of bad) {
    it(`rejects a bad ${option} with a message naming it`, () => {
      assert.throws(
        () => createOutbox({ sequelize, publisher, ...given } as never),
        (err: unknown) => err instanceof OutboxConfigError && err.message.startsWith(message) && err.option.startsWith(option),
      );
    });
  }

  it('rejects a missing sequelize or publisher', () => {
    assert.throws(() => createOutbox({ publisher } as never), /sequelize must be a Sequelize instance/);
    assert.throws(() => createOutbox({ sequelize } as never), /publisher must implement Publisher/);
  });

  it('takes the pubsub name from the publisher unless given', () => {
    const dapr = new DaprPublisher({ pubsubName: 'orders-bus', daprPort: 1 });
    assert.equal(createOutbox({ sequelize, publisher: dapr }).tuning.pubsubName, 'orders-bus');
    assert.equal(createOutbox({ sequelize, publisher: dapr, pubsubName: 'other' }).tuning.pubsubName, 'other');
  });

  it('validates DaprPublisher options', () => {
    assert.throws(() => new DaprPublisher({ daprPort: 'abc' }), /daprPort must be a TCP port number/);
    assert.throws(() => new DaprPublisher({ timeoutMs: 0 }), /timeoutMs must be a number of milliseconds > 0/);
  });

  it('backs off exponentially with jitter, within the floor and the ceiling', () => {
    const t = { minimumRetryInterval: 60, maximumRetryInterval: 3600 };
    assert.equal(retryDelayMs(1, t, () => 0), 60_000, 'never below the floor');
    assert.equal(retryDelayMs(1, t, () => 1), 120_000, 'the first retry spreads up to twice the floor');
    assert.equal(retryDelayMs(3, t, () => 0), 120_000, 'half of 240 s at the low end of the jitter');
    assert.equal(retryDelayMs(3, t, () => 1), 240_000);
    assert.equal(retryDelayMs(20, t, () => 1), 3_600_000, 'capped by the ceiling');
    assert.ok(retryDelayMs(20, t, () => 0) >= 1_800_000);
  });

  it('jitters the first retry too, so that rows failed together do not retry together', () => {
    const t = { minimumRetryInterval: 60, maximumRetryInterval: 3600 };
    const randoms = [0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999];
    const delays = randoms.map((r) => retryDelayMs(1, t, () => r));
    assert.equal(new Set(delays).size, randoms.length, `distinct delays for distinct random values: ${delays.join(', ')}`);
    for (const ms of delays) assert.ok(ms >= 60_000 && ms <= 120_000, `${ms} ms within [floor, 2 x floor]`);
  });

  it('never leaves [floor, ceiling], also when the ceiling is under twice the floor or equals it', () => {
    for (const t of [
      { minimumRetryInterval: 60, maximumRetryInterval: 3600 },
      { minimumRetryInterval: 60, maximumRetryInterval: 90 },
      { minimumRetryInterval: 60, maximumRetryInterval: 60 },
      { minimumRetryInterval: 0.2, maximumRetryInterval: 1 },
    ]) {
      for (let attempt = 0; attempt <= 40; attempt++) {
        for (const r of [0, 0.3, 0.5, 0.999999, 1]) {
          const ms = retryDelayMs(attempt, t, () => r);
          const label = `floor ${t.minimumRetryInterval} s, ceiling ${t.maximumRetryInterval} s, attempt ${attempt}, random ${r}: ${ms} ms`;
          assert.ok(ms >= t.minimumRetryInterval * 1000 && ms <= t.maximumRetryInterval * 1000, label);
        }
      }
    }
    assert.equal(retryDelayMs(1, { minimumRetryInterval: 60, maximumRetryInterval: 90 }, () => 1), 90_000);
  });

  describe('lengths the tables can hold', () => {
    it('takes an instanceId of up to 80 characters and refuses a longer or empty one', () => {
      assert.equal(createOutbox({ sequelize, publisher, instanceId: 'i'.repeat(80) }).owner, 'i'.repeat(80));
      assert.throws(
        () => createOutbox({ sequelize, publisher, instanceId: 'i'.repeat(81) }),
        (err: unknown) => err instanceof OutboxConfigError && err.option === 'instanceId' && /at most 80 characters/.test(err.message),
      );
      assert.throws(() => createOutbox({ sequelize, publisher, instanceId: '' }), (err: unknown) => err instanceof OutboxConfigError && err.option === 'instanceId');
      assert.throws(() => createOutbox({ sequelize, publisher, instanceId: 42 as never }), (err: unknown) => err instanceof OutboxConfigError && err.option === 'instanceId');
    });

    it('names the default instanceId within the limit', () => {
      assert.ok(createOutbox({ sequelize, publisher }).owner.length <= 80);
    });

    it('refuses a pubsubName longer than the pubsub_name column (255 characters)', () => {
      assert.equal(createOutbox({ sequelize, publisher, pubsubName: 'p'.repeat(255) }).tuning.pubsubName, 'p'.repeat(255));
      assert.throws(
        () => createOutbox({ sequelize, publisher, pubsubName: 'p'.repeat(256) }),
        (err: unknown) => err instanceof OutboxConfigError && err.option === 'pubsubName' && /at most 255 characters/.test(err.message),
      );
      assert.throws(
        () => new DaprPublisher({ pubsubName: 'p'.repeat(256), daprPort: 1 }),
        (err: unknown) => err instanceof OutboxConfigError && err.option === 'pubsubName' && /at most 255 characters/.test(err.message),
      );
    });

    it('refuses a per-publish pubsubName longer than 255 characters, writing nothing', async () => {
      const outbox = createOutbox({ sequelize, publisher });
      await outbox.migrate();
      const event = { id: 'evt-long-pubsub', topic: 'orders' };
      await assert.rejects(
        outbox.runInUnitOfWork(() => outbox.bus.publish(event, { pubsubName: 'p'.repeat(256) })),
        (err: unknown) => err instanceof EventValidationError && /pubsubName is 256 characters long; at most 255/.test(err.reason),
      );
      assert.deepEqual(await readRows(outbox, ['evt-long-pubsub']), []);
    });
  });
});
