/**
 * Command line of the standalone emulator, parsed into DaprEmulator options. Environment
 * variables daprd users already set are honoured: DAPR_HTTP_PORT, DAPR_API_TOKEN,
 * APP_API_TOKEN (a flag wins over the variable).
 */
import { EmulatorError } from './errors';
import { DaprEmulatorOptions } from './options';

export const USAGE = `Usage: dapr-outbox-emulator [options]

Runs a Dapr sidecar emulator (daprd's pubsub HTTP API, in-memory broker) until SIGINT/SIGTERM.

Options:
  --port <n>                 port of the default sidecar (default: $DAPR_HTTP_PORT, else 3500; 0 = any free port)
  --host <addr>              interface to listen on (default 127.0.0.1)
  --app-id <id>              app id of the default sidecar (default "app")
  --app-url <url>            the app behind the default sidecar, e.g. http://127.0.0.1:3000
  --attach <id>=<url>        attach another app (consumer group) without a sidecar of its own; repeatable
  --sidecar <id>=<port>[,<url>]
                             add a sidecar for another app id on its own port; repeatable
  --pubsub <name>            a pubsub component name; repeatable (default "pubsub")
  --api-token <token>        DAPR_API_TOKEN required from callers (default $DAPR_API_TOKEN)
  --app-api-token <token>    APP_API_TOKEN sent to apps (default $APP_API_TOKEN)
  --retries <n>              resiliency retries for RETRY answers (default 0)
  --retry-interval-ms <ms>   wait between retries (default 1000 when --retries is set)
  --app-wait-ms <ms>         how long to wait for an app to answer GET /dapr/subscribe (default 60000)
  --record-limit <n>         records kept per kind, oldest dropped first; 0 = all (default 10000)
  --json                     print the ready line (and logs) as JSON
  --quiet                    print only the ready line
  -h, --help                 show this help
`;

export interface CliConfig {
  options: DaprEmulatorOptions;
  /** Apps attached once their GET /dapr/subscribe answers (the default app first). */
  attach: Array<{ appId: string; appUrl: string }>;
  sidecars: Array<{ appId: string; port: number; appUrl?: string }>;
  appWaitMs: number;
  json: boolean;
  quiet: boolean;
}

export type CliParse = { help: true } | ({ help: false } & CliConfig);

/** Parses argv (without node and script). Throws EmulatorError('INVALID_OPTION') naming the flag. */
export function parseCliArgs(argv: readonly string[], env: NodeJS.ProcessEnv = {}): CliParse {
  const flags = new Map<string, string[]>();
  const booleans = new Set(['--json', '--quiet']);
  const known = new Set([
    '--port',
    '--host',
    '--app-id',
    '--app-url',
    '--attach',
    '--sidecar',
    '--pubsub',
    '--api-token',
    '--app-api-token',
    '--retries',
    '--retry-interval-ms',
    '--app-wait-ms',
    '--record-limit',
  ]);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') return { help: true };
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (booleans.has(name)) {
      flags.set(name, ['true']);
      continue;
    }
    if (!known.has(name)) throw EmulatorError.invalidOption('argument', arg, `is not a known option (see --help)`);
    const value = arg.startsWith('--') && eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw EmulatorError.invalidOption(name, undefined, 'needs a value');
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  const last = (name: string): string | undefined => flags.get(name)?.at(-1);
  const int = (name: string, text: string): number => {
    if (!/^\d+$/.test(text)) throw EmulatorError.invalidOption(name, text, 'must be an integer >= 0');
    return Number(text);
  };

  const options: DaprEmulatorOptions = {};
  const portText = last('--port') ?? env.DAPR_HTTP_PORT;
  options.port = portText === undefined || portText === '' ? 3500 : int(last('--port') ? '--port' : 'DAPR_HTTP_PORT', portText);
  const host = last('--host');
  if (host !== undefined) options.host = host;
  const appId = last('--app-id');
  if (appId !== undefined) options.appId = appId;
  const pubsubs = flags.get('--pubsub');
  if (pubsubs) options.pubsubs = pubsubs;
  const apiToken = last('--api-token') ?? (env.DAPR_API_TOKEN || undefined);
  if (apiToken !== undefined) options.apiToken = apiToken;
  const appApiToken = last('--app-api-token') ?? (env.APP_API_TOKEN || undefined);
  if (appApiToken !== undefined) options.appApiToken = appApiToken;
  const retries = last('--retries');
  const interval = last('--retry-interval-ms');
  if (retries !== undefined || interval !== undefined) {
    options.resiliency = {
      retries: retries === undefined ? 0 : int('--retries', retries),
      intervalMs: interval === undefined ? 1000 : int('--retry-interval-ms', interval),
    };
  }

  const recordLimit = last('--record-limit');
  options.recordLimit = recordLimit === undefined ? 10000 : int('--record-limit', recordLimit);

  const attach: CliConfig['attach'] = [];
  const appUrl = last('--app-url');
  if (appUrl !== undefined) attach.push({ appId: appId ?? 'app', appUrl });
  for (const spec of flags.get('--attach') ?? []) {
    const eq = spec.indexOf('=');
    if (eq <= 0 || eq === spec.length - 1) throw EmulatorError.invalidOption('--attach', spec, 'must look like <appId>=<appUrl>');
    attach.push({ appId: spec.slice(0, eq), appUrl: spec.slice(eq + 1) });
  }
  const sidecars: CliConfig['sidecars'] = [];
  for (const spec of flags.get('--sidecar') ?? []) {
    const m = /^([^=]+)=(\d+)(?:,(.+))?$/.exec(spec);
    if (!m) throw EmulatorError.invalidOption('--sidecar', spec, 'must look like <appId>=<port>[,<appUrl>]');
    sidecars.push({ appId: m[1]!, port: int('--sidecar', m[2]!), ...(m[3] !== undefined ? { appUrl: m[3] } : {}) });
  }
  const wait = last('--app-wait-ms');
  return {
    help: false,
    options,
    attach,
    sidecars,
    appWaitMs: wait === undefined ? 60000 : int('--app-wait-ms', wait),
    json: flags.has('--json'),
    quiet: flags.has('--quiet'),
  };
}
