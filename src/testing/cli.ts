#!/usr/bin/env node
/**
 * Standalone Dapr sidecar emulator: `dapr-outbox-emulator --port 3500 --app-id users
 * --app-url http://127.0.0.1:3000`. Runs until SIGINT/SIGTERM. Prints one ready line with the
 * ports (JSON with --json), then attaches the apps as soon as their GET /dapr/subscribe answers,
 * as daprd waits for its app before reading subscriptions.
 */
import { parseCliArgs, USAGE } from './cli-args';
import { DaprEmulator } from './emulator';
import { EmulatorError, messageOf } from './errors';
import { sleep } from './in-flight';
import { EmulatorLogger } from './options';

async function main(): Promise<void> {
  const parsed = parseCliArgs(process.argv.slice(2), process.env);
  if (parsed.help) {
    process.stdout.write(USAGE);
    return;
  }
  const print = (level: 'info' | 'warn', message: string): void => {
    if (parsed.quiet) return;
    const line = parsed.json ? JSON.stringify({ event: 'log', level, message }) : `[${level}] ${message}`;
    (level === 'warn' ? process.stderr : process.stdout).write(`${line}\n`);
  };
  const logger: EmulatorLogger = { info: (m) => print('info', m), warn: (m) => print('warn', m) };
  const emu = await DaprEmulator.start({ ...parsed.options, logger });
  const stopWaiting = new AbortController();

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    print('info', `${signal} received, stopping`);
    stopWaiting.abort();
    emu.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`stop failed: ${messageOf(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));

  for (const sidecar of parsed.sidecars) await emu.addSidecar({ appId: sidecar.appId, port: sidecar.port });
  const sidecars = emu.sidecars.map((s) => ({ appId: s.appId, url: s.url, port: s.port }));
  if (parsed.json) {
    process.stdout.write(`${JSON.stringify({ event: 'ready', url: emu.url, port: emu.port, appId: emu.appId, sidecars })}\n`);
  } else {
    process.stdout.write(`dapr-outbox emulator ready\n`);
    for (const s of sidecars) process.stdout.write(`  sidecar ${s.appId}: ${s.url} (DAPR_HTTP_PORT=${s.port})\n`);
  }

  const apps = [...parsed.attach, ...parsed.sidecars.flatMap((s) => (s.appUrl ? [{ appId: s.appId, appUrl: s.appUrl }] : []))];
  await Promise.all(apps.map((app) => attachWhenReady(emu, app, parsed.appWaitMs, stopWaiting.signal, logger)));
}

/** Retries discovery while the app is not listening yet (connection refused), up to `waitMs`. */
async function attachWhenReady(
  emu: DaprEmulator,
  app: { appId: string; appUrl: string },
  waitMs: number,
  signal: AbortSignal,
  logger: EmulatorLogger,
): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await emu.attachApp(app);
      return;
    } catch (err) {
      const retriable = err instanceof EmulatorError && err.code === 'DISCOVERY_FAILED' && /ECONNREFUSED|ECONNRESET|socket hang up/.test(messageOf(err));
      if (!retriable || Date.now() >= deadline) {
        logger.warn(`app ${app.appId} not attached: ${messageOf(err)}`);
        return;
      }
    }
    if (!(await sleep(250, signal))) return;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`dapr-outbox-emulator: ${messageOf(err)}\n`);
  process.exit(err instanceof EmulatorError && err.code === 'INVALID_OPTION' ? 2 : 1);
});
