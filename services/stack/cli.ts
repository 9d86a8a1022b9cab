/**
 * `npm run stack -- up [--cluster] | down | status | env`: the local stack for trying replistream
 * and for the integration tests. See stack.ts.
 */
import { down, stackEnv, stackLayout, status, up, type StackServers } from './stack.js';
import { SERVER_KINDS, parseServerKind, serverBinary } from './servers.js';

/** `--source-server redis-6.2` and the like: which server each Redis instance runs. */
function serverOptions(args: string[]): StackServers {
  const out: StackServers = {};
  for (const role of ['source', 'destination', 'cluster'] as const) {
    const i = args.indexOf(`--${role}-server`);
    if (i >= 0) out[role] = parseServerKind(args[i + 1], `--${role}-server`);
  }
  return out;
}

async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  switch (verb) {
    case 'up': {
      const t0 = Date.now();
      await up({ cluster: rest.includes('--cluster'), servers: serverOptions(rest) });
      process.stdout.write(`stack is up (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
      for (const [k, v] of Object.entries(stackEnv())) process.stdout.write(`${k}=${v}\n`);
      return 0;
    }
    case 'down':
      await down();
      process.stdout.write('stack is down\n');
      return 0;
    case 'status': {
      const rows = await status();
      const json = rest.includes('--json');
      if (json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
      else {
        process.stdout.write('PART                PORT   PID      ANSWERS SERVER\n');
        for (const r of rows) {
          process.stdout.write(`${r.name.padEnd(19)} ${String(r.port).padEnd(6)} ${String(r.pid ?? '-').padEnd(8)} ${(r.answers ? 'yes' : 'no').padEnd(7)} ${r.server ?? ''}\n`);
        }
      }
      return rows.every((r) => r.answers) ? 0 : 1;
    }
    case 'servers': {
      // fetches (once) and lists every server a Redis instance can run: CI calls it up front
      const cacheDir = stackLayout().cacheDir;
      for (const kind of SERVER_KINDS) process.stdout.write(`${kind.padEnd(11)} ${serverBinary(kind, cacheDir)}\n`);
      return 0;
    }
    case 'env':
      for (const [k, v] of Object.entries(stackEnv())) process.stdout.write(`export ${k}=${v}\n`);
      return 0;
    default:
      process.stderr.write(
        `usage: npm run stack -- up [--cluster] [--source-server K] [--destination-server K] [--cluster-server K] | down | status [--json] | env | servers\n` +
          `  K: ${SERVER_KINDS.join(', ')} (default redis-7.0; also REPLISTREAM_SOURCE_SERVER and the like)\n`,
      );
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
