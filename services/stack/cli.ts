/**
 * `npm run stack -- up [--cluster] | down | status | env`: the local stack for trying replistream
 * and for the integration tests. See stack.ts.
 */
import { down, stackEnv, status, up } from './stack.js';

async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  switch (verb) {
    case 'up': {
      const t0 = Date.now();
      await up({ cluster: rest.includes('--cluster') });
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
        process.stdout.write('PART                PORT   PID      ANSWERS\n');
        for (const r of rows) {
          process.stdout.write(`${r.name.padEnd(19)} ${String(r.port).padEnd(6)} ${String(r.pid ?? '-').padEnd(8)} ${r.answers ? 'yes' : 'no'}\n`);
        }
      }
      return rows.every((r) => r.answers) ? 0 : 1;
    }
    case 'env':
      for (const [k, v] of Object.entries(stackEnv())) process.stdout.write(`export ${k}=${v}\n`);
      return 0;
    default:
      process.stderr.write('usage: npm run stack -- up [--cluster] | down | status [--json] | env\n');
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
