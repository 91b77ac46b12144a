import { existsSync } from 'node:fs';

/** Where a Debian or Ubuntu Chromium (or a Chrome) is installed; CHROMIUM_PATH wins. */
const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];

export function findChromium(): string | undefined {
  const given = process.env.CHROMIUM_PATH;
  if (given) return existsSync(given) ? given : undefined;
  return CANDIDATES.find((p) => existsSync(p));
}

/**
 * For browser suites, from a `before` hook: skips the suite where no Chromium is installed, and
 * the log says what to install.
 */
export function requireChromium(ctx: Mocha.Context): string {
  const path = findChromium();
  if (path) return path;
  const suite = ctx.test?.parent?.fullTitle() ?? 'browser tests';
  console.log(`      skipped "${suite}": no Chromium found; install it (apt-get install -y chromium) or set CHROMIUM_PATH to a Chromium or Chrome binary`);
  ctx.skip();
}
