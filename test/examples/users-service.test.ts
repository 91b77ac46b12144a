import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { QueryTypes } from 'sequelize';
import request from 'supertest';
import { DaprPublisher } from '../../src';
import { silentLogger } from '../../src/extend';
import { DaprEmulator } from '../../src/testing';
import { createUsersService, type UsersService } from '../../example/users/app';
import { createTestDb, serverDialects, testDialects, type TestDb } from '../support/db';
import { run, waitUntil } from '../support/processes';
import { readRows } from '../support/rows';
import { RecordingPublisher } from '../support/recording-publisher';

const root = join(__dirname, '..', '..');

async function listen(app: import('express').Express): Promise<{ server: Server; url: string }> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

for (const kind of testDialects()) {
  describe(`example: users service end to end (${kind})`, () => {
    let db: TestDb;
    let emu: DaprEmulator;
    let svc: UsersService;
    let server: Server;
    const lines: string[] = [];

    beforeEach(async () => {
      lines.length = 0;
      db = await createTestDb(kind);
      emu = await DaprEmulator.start({ appId: 'users' });
      svc = await createUsersService({ sequelize: db.sequelize, publisher: new DaprPublisher({ daprPort: emu.port }), log: (l) => lines.push(l), logger: silentLogger });
      const listening = await listen(svc.app);
      server = listening.server;
      await emu.attachApp({ appId: 'users', appUrl: listening.url });
    });
    afterEach(async () => {
      await svc.close();
      await emu.stop();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await db.close();
    });

    it('registers, delivers RegisterUserEvent and logs it exactly once', async () => {
      const res = await request(server).post('/register').send({ account: 'tom', mobile: '19999999999' });
      assert.equal(res.status, 201);
      await svc.outbox.drain();
      await emu.idle();
      assert.deepEqual(lines, ['注册用户成功: tom']);
      const notices = await request(server).get('/notices');
      assert.deepEqual(notices.body, [{ eventId: res.body.eventId, account: 'tom' }]);
      const delivery = emu.deliveries.find((d) => d.topic === 'RegisterUserEvent');
      assert.equal(delivery?.outcome, 'SUCCESS');
      assert.equal(delivery?.eventId, res.body.eventId);
    });

    it('a redelivered event is handled once (the inbox)', async () => {
      const res = await request(server).post('/register').send({ account: 'jerry', mobile: '19999999998' });
      await svc.outbox.drain();
      await emu.idle();
      // The same event published again (a retry after a lost acknowledgement looks like this).
      const [row] = await readRows(svc.outbox, [res.body.eventId]);
      const again = new DaprPublisher({ daprPort: emu.port });
      await again.publish(row!);
      await again.close();
      await emu.idle();
      assert.equal(emu.deliveries.filter((d) => d.eventId === res.body.eventId && d.outcome === 'SUCCESS').length, 2);
      assert.deepEqual(lines, ['注册用户成功: jerry']);
      assert.equal(await svc.Notice.count(), 1);
    });

    for (const [name, body] of [
      ['a missing account', { mobile: '19999999999' }],
      ['an invalid mobile', { account: 'tom', mobile: 'call me' }],
      ['a non-string account', { account: 42, mobile: '19999999999' }],
    ] as const) {
      it(`answers 400 for ${name} and writes nothing`, async () => {
        const res = await request(server).post('/register').send(body);
        assert.equal(res.status, 400);
        assert.match(res.body.error, /invalid registration/);
        assert.ok(res.body.problems.length > 0);
        await svc.outbox.drain();
        assert.equal(await svc.User.count(), 0);
        assert.equal((await svc.outbox.stats()).published + (await svc.outbox.stats()).notPublished, 0);
        assert.equal(emu.publishes.length, 0);
      });
    }

    it('answers 400 for a body that is not JSON', async () => {
      const res = await request(server).post('/register').set('content-type', 'application/json').send('{"account":');
      assert.equal(res.status, 400);
      assert.equal(await svc.User.count(), 0);
    });

    it('drops (does not retry forever) a RegisterUserEvent it could never handle', async () => {
      const envelope = { id: 'poison-1', source: 'users', type: 'com.dapr.event.sent', specversion: '1.0', datacontenttype: 'application/json', topic: 'RegisterUserEvent', pubsubname: 'pubsub', data: { mobile: '1' } };
      const res = await request(server).post('/IntegrationEvent/RegisterUser').set('content-type', 'application/cloudevents+json').send(JSON.stringify(envelope));
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { status: 'DROP' });
      assert.equal(await svc.Notice.count(), 0);
    });

    it('GET /health: 503 until the processors run, then 200 with the outbox\'s state', async () => {
      const before = await request(server).get('/health');
      assert.equal(before.status, 503);
      assert.equal(before.body.status, 'unhealthy');
      assert.deepEqual(before.body.reasons, ['the background processors are not running (outbox.start() was not called, or outbox.stop() was)']);
      svc.outbox.start();
      const after = await request(server).get('/health');
      assert.equal(after.status, 200);
      assert.equal(after.body.status, 'ok');
      assert.equal(after.body.processors.running, true);
      assert.equal(after.body.backlog, 0);
      assert.deepEqual(after.body.sidecar, { healthy: true });
    });
  });
}

describe('example: the admin dashboard at /admin', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('sqlite');
  });
  after(async () => {
    await db.close();
  });

  it('with a token: basic auth with it as the password opens the page and the API; anything else is 401', async () => {
    const svc = await createUsersService({ sequelize: db.sequelize, publisher: new RecordingPublisher(), log: () => {}, logger: silentLogger, adminToken: 's3cret' });
    try {
      const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
      const page = await request(svc.app).get('/admin/').set('authorization', basic('ops', 's3cret')).expect(200);
      assert.match(page.text, /<title>dapr-outbox admin<\/title>/);
      const stats = await request(svc.app).get('/admin/stats').set('authorization', basic('admin', 's3cret')).expect(200);
      assert.equal(stats.body.published, 0);
      const subscriptions = await request(svc.app).get('/admin/subscriptions').set('authorization', basic('admin', 's3cret')).expect(200);
      assert.deepEqual(subscriptions.body.subscriptions.map((s: { topic: string }) => s.topic), ['RegisterUserEvent']);
      for (const authorization of [basic('admin', 'wrong'), basic('admin', 's3cret!'), 'Bearer s3cret', 's3cret']) {
        const res = await request(svc.app).get('/admin/stats').set('authorization', authorization).expect(401);
        assert.match(res.headers['www-authenticate']!, /^Basic realm=/);
      }
      await request(svc.app).get('/admin/').expect(401);
    } finally {
      await svc.close();
    }
  });

  it('without a token: mounted, and 401 to everything', async () => {
    const svc = await createUsersService({ sequelize: db.sequelize, publisher: new RecordingPublisher(), log: () => {}, logger: silentLogger, adminToken: '' });
    try {
      await request(svc.app).get('/admin/').set('authorization', `Basic ${Buffer.from('admin:').toString('base64')}`).expect(401);
      await request(svc.app).get('/admin/stats').expect(401);
    } finally {
      await svc.close();
    }
  });
});

describe('example: two processes', () => {
  it('a registration in the users service reaches the notifications service in another process', async function () {
    const db = await createTestDb('sqlite');
    const notifDir = await createTestDb('sqlite');
    const notifications = run(process.execPath, ['--import', 'tsx', join(root, 'example/notifications/main.ts')], {
      env: { PORT: '0', DATABASE_URL: notifDir.url },
    });
    let emulator: ReturnType<typeof run> | undefined;
    let svc: UsersService | undefined;
    try {
      const [, notifUrl] = await notifications.waitFor(/listening on (http:\/\/\S+)/);
      emulator = run(process.execPath, ['--import', 'tsx', join(root, 'src/testing/cli.ts'), '--port', '0', '--app-id', 'users', '--attach', `notifications=${notifUrl}`]);
      const [sidecarPort] = (await emulator.waitFor(/127\.0\.0\.1:(\d+)/)).slice(1);
      svc = await createUsersService({ sequelize: db.sequelize, publisher: new DaprPublisher({ daprPort: sidecarPort }), log: () => {}, logger: silentLogger });
      const account = `u${randomBytes(3).toString('hex')}`;
      const res = await request(svc.app).post('/register').send({ account, mobile: '13800000000' });
      assert.equal(res.status, 201);
      await svc.outbox.drain();
      await waitUntil(async () => (await fetch(`${notifUrl}/welcomes`).then((r) => r.json()) as unknown[]).length > 0, 'the welcome message');
      const welcomes = await fetch(`${notifUrl}/welcomes`).then((r) => r.json());
      assert.deepEqual(welcomes, [{ eventId: res.body.eventId, account }]);
      assert.match(notifications.output(), new RegExp(`welcome message sent to ${account}`));
    } finally {
      await svc?.close();
      await emulator?.stop();
      await notifications.stop();
      await db.close();
      await notifDir.close();
    }
  });
});

describe('example: the README\'s main-job command', () => {
  it('`npm start` serves on embedded defaults: a registration is delivered and logged', async () => {
    const child = run('npm', ['start', '--silent'], { cwd: root, env: { PORT: '0', DATABASE_URL: '', DAPR_HTTP_PORT: '', ADMIN_TOKEN: 'npm-start-token' } });
    // npm runs the program under `sh -c`; SIGTERM to the group kills that shell at once and npm
    // exits right after it, while the program is still handling the signal. The output is
    // complete only when every process holding the pipe, the program included, has exited.
    const outputComplete = new Promise<void>((resolve) => child.proc.once('close', () => resolve()));
    try {
      const [, url] = await child.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/, 120_000);
      await child.waitFor(/admin dashboard: http:\/\/127\.0\.0\.1:\d+\/admin\/ \(any user name, password: the ADMIN_TOKEN value\)/);
      await child.waitFor(/try: curl -X POST http:\/\/127\.0\.0\.1:\d+\/register/);
      const admin = await fetch(`${url}/admin/stats`, { headers: { authorization: `Basic ${Buffer.from('admin:npm-start-token').toString('base64')}` } });
      assert.equal(admin.status, 200);
      const account = `r${randomBytes(4).toString('hex')}`;
      const res = await fetch(`${url}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ account, mobile: '19999999999' }) });
      assert.equal(res.status, 201);
      await child.waitFor(new RegExp(`注册用户成功: ${account}`));
    } finally {
      await child.stop('SIGTERM');
      await outputComplete;
    }
    assert.match(child.output(), /SIGTERM: shutting down/);
  });

  for (const kind of serverDialects()) {
    it(`\`npm start\` with DATABASE_URL=${kind}://...: a registration is committed there, delivered and logged`, async () => {
      const db = await createTestDb(kind);
      const child = run('npm', ['start', '--silent'], { cwd: root, env: { PORT: '0', DATABASE_URL: db.url, DAPR_HTTP_PORT: '' } });
      const outputComplete = new Promise<void>((resolve) => child.proc.once('close', () => resolve()));
      try {
        const [, url] = await child.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/, 120_000);
        assert.match(child.output(), new RegExp(`database: ${kind}://\\*\\*\\*@`), 'the URL is logged without its credentials');
        const account = `r${randomBytes(4).toString('hex')}`;
        const res = await fetch(`${url}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ account, mobile: '19999999999' }) });
        assert.equal(res.status, 201);
        await child.waitFor(new RegExp(`注册用户成功: ${account}`));
        const { eventId } = (await res.json()) as { eventId: string };
        // The service's tables are in that database: the user, its event Published, its notice.
        const [user] = (await db.sequelize.query('SELECT account FROM users', { type: QueryTypes.SELECT })) as Array<{ account: string }>;
        assert.equal(user?.account, account);
        await waitUntil(async () => {
          const rows = (await db.sequelize.query('SELECT state FROM integration_event_log WHERE event_id = ?', { replacements: [eventId], type: QueryTypes.SELECT })) as Array<{ state: unknown }>;
          return rows.length === 1 && Number(rows[0]!.state) === 2;
        }, 'the event marked Published');
        assert.equal(await countNotices(db, eventId), 1);
      } finally {
        await child.stop('SIGTERM');
        await outputComplete;
        await db.close();
      }
    });
  }
});

async function countNotices(db: TestDb, eventId: string): Promise<number> {
  const column = db.sequelize.getQueryInterface().quoteIdentifier('eventId');
  const [row] = (await db.sequelize.query(`SELECT COUNT(*) AS n FROM registration_notices WHERE ${column} = ?`, { replacements: [eventId], type: QueryTypes.SELECT })) as Array<{ n: unknown }>;
  return Number(row?.n);
}
