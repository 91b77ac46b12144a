/**
 * Runs the notifications service. Its sidecar (real, or the standalone emulator) must be told
 * about it: `dapr run --app-id notifications --app-port 3001 -- npm run start:notifications`, or
 * `npx dapr-outbox-emulator --attach notifications=http://127.0.0.1:3001 ...`.
 *
 *   PORT            HTTP port (default 3001)
 *   DATABASE_URL    Sequelize URL (default sqlite:./data/notifications.db)
 *   APP_API_TOKEN   token the sidecar sends with deliveries (checked when set)
 */
import { mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { Sequelize } from 'sequelize';
import { createNotificationsService } from './app';

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL || 'sqlite:./data/notifications.db';
  if (databaseUrl.startsWith('sqlite:')) mkdirSync('./data', { recursive: true });
  const sequelize = new Sequelize(databaseUrl, { logging: false });
  const { app } = await createNotificationsService({ sequelize });
  const server = app.listen(Number(process.env.PORT || 3001), '127.0.0.1');
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  console.log(`notifications service listening on http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const shutdown = async () => {
    server.close();
    server.closeAllConnections?.();
    await sequelize.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown());
  process.on('SIGINT', () => void shutdown());
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
