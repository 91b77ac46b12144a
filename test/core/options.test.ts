import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sequelize } from 'sequelize';
import { createOutbox, DaprPublisher, DEFAULTS, OutboxConfigError, retryDelayMs } from '../../src';
import { RecordingPublisher } from '../support/recording-publisher';

describe('createOutbox options', () => {
  // Never opened: these tests only build outboxes.
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: join(tmpdir(), 'dapr-outbox-options-never-opened.db'), logging: false });
  after(() => sequelize.close());
  const publisher = new RecordingPublisher();

  it('keeps MASA\'s defaults, in seconds', () => {
    const outbox = createOutbox({ sequelize, publisher });
    assert.equal(outbox.tuning.localRetryTimes, 3);
    assert.equal(outbox.tuning.maxRetryTimes, 10);
    assert.equal(outbox.tuning.failedRetryInterval, 60);
    assert.equal(outbox.tuning.minimumRetryInterval, 60);
    assert.equal(outbox.tuning.localFailedRetryInterval, 3);
    assert.equal(outbox.tuning.retryBatchSize, 100);
    assert.equal(outbox.tuning.cleaningLocalQueueExpireInterval, 60);
    assert.equal(outbox.tuning.cleaningExpireInterval, 300);
    assert.equal(outbox.tuning.publishedExpireTime, 86400);
    assert.equal(outbox.tuning.deleteBatchCount, 1000);
    assert.equal(outbox.tuning.pubsubName, 'pubsub');
    assert.deepEqual(outbox.tuning, DEFAULTS);
  });

  const bad: Array<[string, Record<string, unknown>, string]> = [
    ['maxRetryTimes', { maxRetryTimes: -1 }, 'maxRetryTimes must be an integer >= 0, got -1'],
    ['retryBatchSize', { retryBatchSize: 1.5 }, 'retryBatchSize must be an integer >= 1, got 1.5'],
    ['leaseTime', { leaseTime: 0 }, 'leaseTime must be a number of seconds > 0, got 0'],
    ['failedRetryInterval', { failedRetryInterval: '60' }, 'failedRetryInterval must be a number of seconds > 0, got "60"'],
    ['bulk', { bulk: 'yes' }, 'bulk must be a boolean, got "yes"'],
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
    assert.equal(retryDelayMs(1, t, () => 1), 60_000);
    assert.equal(retryDelayMs(3, t, () => 0), 120_000, 'half of 240 s at the low end of the jitter');
    assert.equal(retryDelayMs(3, t, () => 1), 240_000);
    assert.equal(retryDelayMs(20, t, () => 1), 3_600_000, 'capped by the ceiling');
    assert.ok(retryDelayMs(20, t, () => 0) >= 1_800_000);
  });
});
