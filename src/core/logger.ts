/** The logger the library reports through. Any object with these methods fits (console, pino, winston). */
export interface Logger {
  debug(message: string, context?: Record<string, unknown>): void;
  info(message: string, context?: Record<string, unknown>): void;
  warn(message: string, context?: Record<string, unknown>): void;
  error(message: string, context?: Record<string, unknown>): void;
}

/** Default: warnings and errors to the console, tagged with the library's name. */
export const consoleLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: (message, context) => console.warn(`[dapr-outbox] ${message}`, context ?? ''),
  error: (message, context) => console.error(`[dapr-outbox] ${message}`, context ?? ''),
};

export const silentLogger: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
