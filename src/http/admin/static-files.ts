/**
 * The dashboard's three files, read once from the `static` folder beside this module (copied
 * next to the compiled module by the build, so both the CommonJS and ES module entries find it).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface StaticFile {
  body: Buffer;
  type: string;
}

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
};

let cache: Map<string, StaticFile> | undefined;

/** The files by name; throws at router creation, not at the first request, when one is missing. */
export function dashboardFiles(dir = join(__dirname, 'static')): Map<string, StaticFile> {
  if (cache) return cache;
  const files = new Map<string, StaticFile>();
  for (const [name, type] of Object.entries(FILES)) files.set(name, { body: readFileSync(join(dir, name)), type });
  cache = files;
  return files;
}
