/**
 * Two processes: the CLI emulator runs in a child process (it holds the broker), the
 * subscriber is an express app in this process. A publish through the child's sidecar reaches
 * the app; a second sidecar added at run time publishes with its own `source`.
 */
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import express from 'express';
import { publish, request } from './helpers';

const root = path.resolve(__dirname, '../..');

interface Ready {
  event: 'ready';
  url: string;
  port: number;
  appId: string;
  sidecars: Array<{ appId: string; url: string; port: number }>;
}

/** Spawns the CLI and resolves with its JSON ready line. */
function startCli(args: string[]): Promise<{ child: ChildProcess; ready: Ready; output: string[] }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/testing/cli.ts'), ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  return new Promise((resolve, reject) => {
    let buffer = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        output.push(line);
        const parsed = JSON.parse(line) as { event: string };
        if (parsed.event === 'ready') resolve({ child, ready: parsed as Ready, output });
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => output.push(chunk));
    child.once('exit', (code) => reject(new Error(`emulator CLI exited with ${code}: ${output.join('\n')}`)));
  });
}

function stopChild(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

describe('emulator: two processes (CLI emulator + app in this process)', () => {
  let child: ChildProcess | undefined;
  let server: http.Server | undefined;
  const sockets = new Set<net.Socket>();
  const received: Array<{ path: string; headers: http.IncomingHttpHeaders; body: Record<string, unknown> }> = [];
  let onReceive: (() => void) | undefined;
  let appUrl = '';
  /** URL of the CLI's default sidecar (set by the first test). */
  let cliUrl = '';

  before(async () => {
    const app = express();
    app.get('/dapr/subscribe', (_req, res) => {
      res.json([{ pubsubname: 'pubsub', topic: 'orders', route: '/orders' }]);
    });
    app.post('/orders', express.json({ type: 'application/cloudevents+json' }), (req, res) => {
      received.push({ path: req.path, headers: req.headers, body: req.body as Record<string, unknown> });
      res.json({ status: 'SUCCESS' });
      onReceive?.();
    });
    server = http.createServer(app);
    server.on('connection', (s: net.Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    appUrl = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });

  after(async () => {
    if (child) assert.equal(await stopChild(child), 0);
    if (server) {
      await new Promise<void>((resolve) => {
        server!.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    }
  });

  const nextDelivery = (): Promise<void> => new Promise((resolve) => (onReceive = resolve));

  it('delivers a publish made through the CLI emulator to an app attached at startup (--attach)', async () => {
    const started = await startCli(['--port', '0', '--app-id', 'publisher', '--attach', `consumer=${appUrl}`, '--json']);
    child = started.child;
    const url = started.ready.url;
    cliUrl = url;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    // The CLI attaches in the background once the app answers; wait until it is listed.
    for (;;) {
      const apps = JSON.parse((await request(`${url}/emulator/v1/apps`)).text) as Array<{ appId: string }>;
      if (apps.some((a) => a.appId === 'consumer')) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const delivered = nextDelivery();
    assert.equal((await publish(url, 'orders', { n: 1 })).status, 204);
    await delivered;
    const got = received.at(-1)!;
    assert.equal(got.path, '/orders');
    assert.equal(got.headers['content-type'], 'application/cloudevents+json');
    assert.equal(got.body.source, 'publisher');
    assert.deepEqual(got.body.data, { n: 1 });
    assert.equal((await request(`${url}/emulator/v1/idle`, { method: 'POST' })).status, 204);
    const records = JSON.parse((await request(`${url}/emulator/v1/records`)).text) as { deliveries: Array<{ appId: string; outcome: string }> };
    assert.deepEqual(records.deliveries.map((d) => [d.appId, d.outcome]), [['consumer', 'SUCCESS']]);
  });

  it('a second sidecar added at run time publishes with its own source; apps can be attached by an admin route', async () => {
    assert.ok(child && cliUrl, 'the CLI runs');
    const added = await request(`${cliUrl}/emulator/v1/sidecars`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ appId: 'billing' }),
    });
    assert.equal(added.status, 201);
    const sidecar = JSON.parse(added.text) as { appId: string; url: string; port: number };
    assert.equal(sidecar.appId, 'billing');
    const reattach = await request(`${sidecar.url}/emulator/v1/apps`, {
      method: 'POST',
      body: JSON.stringify({ appId: 'consumer', appUrl }),
    });
    assert.equal(reattach.status, 200);
    assert.deepEqual((JSON.parse(reattach.text) as { subscriptions: Array<{ topic: string }> }).subscriptions.map((s) => s.topic), ['orders']);
    const delivered = nextDelivery();
    assert.equal((await publish(sidecar.url, 'orders', { n: 2 })).status, 204);
    await delivered;
    assert.equal(received.at(-1)!.body.source, 'billing');
  });
});
