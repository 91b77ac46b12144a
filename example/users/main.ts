/**
 * Runs the users service. With nothing set it uses embedded defaults: a SQLite file under
 * ./data and an in-process Dapr sidecar emulator. Set DATABASE_URL (postgres://...,
 * mysql://...) and DAPR_HTTP_PORT (a real sidecar, e.g. under `dapr run`) to use those instead.
 *
 *   PORT            HTTP port (default 3000; 0 picks a free one)
 *   DATABASE_URL    Sequelize URL (default sqlite:./data/users.db)
 *   DAPR_HTTP_PORT  the sidecar's port; when unset an emulator runs in-process
 *   APP_API_TOKEN   token the sidecar sends with deliveries (checked when set)
 *   ADMIN_TOKEN     password of the admin dashboard at /admin (basic auth, any user name);
 *                   without it the dashboard answers 401
 */
import { mkdirSync, writeSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { Sequelize } from 'sequelize';
import { DaprPublisher } from '../../src';
import { DaprEmulator } from '../../src/testing';
import { createUsersService } from './app';

async function main(): Promise<void> {
  const port = Number(process.env.PORT || 3000);
  const databaseUrl = process.env.DATABASE_URL || 'sqlite:./data/users.db';
  if (databaseUrl.startsWith('sqlite:')) mkdirSync('./data', { recursive: true });
  const sequelize = new Sequelize(databaseUrl, { logging: false });

  // Without a real sidecar, the emulator plays daprd for this app (app id 'users'). It keeps the
  // last 1,000 records of what it did, as the CLI does, so a long-running service stays flat.
  const emulator = process.env.DAPR_HTTP_PORT
    ? undefined
    : await DaprEmulator.start({ appId: 'users', appApiToken: process.env.APP_API_TOKEN, recordLimit: 1000 });
  const publisher = new DaprPublisher({ pubsubName: 'pubsub', daprPort: emulator?.port ?? process.env.DAPR_HTTP_PORT });
  const service = await createUsersService({ sequelize, publisher });
  service.outbox.start();

  const server = service.app.listen(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  if (emulator) await emulator.attachApp({ appId: 'users', appUrl: url });

  console.log(`users service listening on ${url} (database: ${databaseUrl.replace(/\/\/[^@]*@/, '//***@')}, sidecar: ${emulator ? `in-process emulator at ${emulator.url}` : `127.0.0.1:${process.env.DAPR_HTTP_PORT}`})`);
  console.log(
    process.env.ADMIN_TOKEN
      ? `admin dashboard: ${url}/admin/ (any user name, password: the ADMIN_TOKEN value)`
      : `admin dashboard: ${url}/admin/ is closed (401); set ADMIN_TOKEN to open it`,
  );
  console.log(`try: curl -X POST ${url}/register -H 'content-type: application/json' -d '{"account":"tom","mobile":"19999999999"}'`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    // Written synchronously, before anything can delay or end the process: whoever sent the
    // signal sees the line even if the process is killed during the shutdown.
    writeSync(process.stdout.fd, `${signal}: shutting down\n`);
    server.close();
    server.closeAllConnections?.();
    await service.close();
    await emulator?.stop();
    await sequelize.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
