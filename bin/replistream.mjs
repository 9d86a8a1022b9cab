#!/usr/bin/env node
// The `replistream` command. It runs the compiled JavaScript from `npm run build` when that build
// is there and current: no TypeScript loader, no transpiling at start. It runs the bundle
// (dist/bundle/cli.mjs: the services and their libraries in a few files, the lazily loaded parts
// as chunks of their own), else the per-file output of tsc (dist/services/cli.js). Why a bundle:
// Node loads a module graph of hundreds of small files (kafkajs, ioredis, pino, ours) one by one;
// an applier spent about 0.3 CPU-s loading them, the bundle about half that, and on two busy
// cores a restarted applier reaches its first batch that much sooner. It falls back to the TypeScript sources through tsx's loader when
//  - there is no build (a fresh clone before `npm run build` still works, only starts slower), or
//  - the build is stale: a file under services/ or a tsconfig is newer than the start of the last
//    complete build (dist/.built, written by `npm run build`), so an edit never silently runs old
//    code; a note on stderr says so. A build in progress has no dist/.built yet: sources too.
// In the image there are no sources: the build is run as it is.
// REPLISTREAM_RUN=dist|src forces one (dist fails when there is no build).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';

const root = fileURLToPath(new URL('..', import.meta.url));
const bundled = join(root, 'dist', 'bundle', 'cli.mjs');
const compiled = existsSync(bundled) ? bundled : join(root, 'dist', 'services', 'cli.js');
const sources = join(root, 'services');

/** Why the build cannot be run, or null when it is current. */
function staleness() {
  if (!existsSync(compiled)) return 'no build';
  if (!existsSync(sources)) return null; // an install without sources (the image): the build is all there is
  let built;
  try {
    built = statSync(join(root, 'dist', '.built')).mtimeMs;
  } catch {
    return 'dist/ is not a complete `npm run build`';
  }
  const inputs = readdirSync(sources, { recursive: true })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(sources, f))
    .concat([join(root, 'tsconfig.json'), join(root, 'tsconfig.build.json')]);
  for (const f of inputs) {
    try {
      if (statSync(f).mtimeMs > built) return `${f.slice(root.length)} is newer than dist/`;
    } catch {
      // deleted meanwhile
    }
  }
  return null;
}

const forced = process.env.REPLISTREAM_RUN;
const why = forced === 'src' ? 'REPLISTREAM_RUN=src' : forced === 'dist' ? null : staleness();
if (why === null) {
  await import(pathToFileURL(compiled).href);
} else {
  if (why !== 'no build' && forced !== 'src') {
    process.stderr.write(`replistream: ${why}; running the TypeScript sources through tsx (\`npm run build\` to compile)\n`);
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import('../services/cli.ts');
}
