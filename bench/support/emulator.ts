/**
 * The Dapr sidecar emulator in a process of its own, as daprd is: its CPU work (parsing,
 * envelopes, records) then does not run on the measured service's event loop. Driven through
 * its admin routes (/emulator/v1/*): attach an app, clear the records between rounds (they grow
 * with every publish), wait for idle.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { Agent } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { send } from './load';

const ROOT = join(__dirname, '..', '..');

/**
 * The built CLI when it is at least as new as every emulator source (npm run bench builds first):
 * it starts in half a second. Otherwise the source through tsx, which takes a second more.
 */
function cliCommand(): string[] {
  const built = join(ROOT, 'dist', 'cjs', 'testing', 'cli.js');
  try {
    const builtAt = statSync(built).mtimeMs;
    const dir = join(ROOT, 'src', 'testing');
    const newest = Math.max(...readdirSync(dir).map((f) => statSync(join(dir, f)).mtimeMs));
    if (builtAt >= newest) return [built];
  } catch {
    /* not built */
  }
  return ['--import', 'tsx', join(ROOT, 'src', 'testing', 'cli.ts')];
}

export class EmulatorProcess {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 4 });

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  /** Starts `dapr-outbox-emulator` on a free loopback port. */
  static async start(appId = 'bench'): Promise<EmulatorProcess> {
    const child = spawn(process.execPath, [...cliCommand(), '--port', '0', '--app-id', appId, '--json', '--quiet'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      cwd: ROOT,
    });
    running.add(child);
    child.once('exit', () => running.delete(child));
    const port = await new Promise<number>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      const timer = setTimeout(() => reject(new Error('the emulator did not start within 30 s')), 30_000);
      lines.on('line', (line) => {
        try {
          const msg = JSON.parse(line) as { event?: string; port?: number };
          if (msg.event === 'ready' && typeof msg.port === 'number') {
            clearTimeout(timer);
            resolve(msg.port);
          }
        } catch {
          /* not a JSON line */
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the emulator exited with ${code} before it was ready`));
      });
    });
    return new EmulatorProcess(child, port);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Attaches the app (GET /dapr/subscribe is read at once): its subscriptions get deliveries. */
  async attachApp(appId: string, appUrl: string): Promise<void> {
    await this.admin('POST', '/emulator/v1/apps', JSON.stringify({ appId, appUrl }));
  }

  async detachApp(appId: string): Promise<void> {
    await this.admin('DELETE', `/emulator/v1/apps/${encodeURIComponent(appId)}`);
  }

  /** Waits until no publish or delivery is in flight. */
  async idle(): Promise<void> {
    await this.admin('POST', '/emulator/v1/idle', '{}');
  }

  /** Empties the records (one per publish and per delivery), so the emulator's memory stays flat. */
  async clearRecords(): Promise<void> {
    await this.admin('DELETE', '/emulator/v1/records');
  }

  async stop(): Promise<void> {
    this.agent.destroy();
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  private async admin(method: string, path: string, body?: string): Promise<string> {
    const answer = await send(this.agent, this.port, method, path, body);
    if (answer.status >= 300) throw new Error(`emulator ${method} ${path}: ${answer.status} ${answer.body}`);
    return answer.body;
  }
}

const running = new Set<ChildProcess>();

// Whatever way this process ends, no emulator outlives it.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Kills the emulators a crashed figure left running (by their own pids only). */
export function killAllEmulators(): void {
  for (const child of running) child.kill('SIGKILL');
}
