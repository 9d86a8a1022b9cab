/**
 * `npm run bench -- <name> [args]`: benchmarks, outside `npm test`. Each prints its figures beside
 * a baseline measured in the same run, as a ratio. `npm run soak` is `npm run bench -- soak`.
 */
const [name, ...args] = process.argv.slice(2);
const benches: Record<string, () => Promise<{ default?: unknown } & Record<string, unknown>>> = {
  parse: () => import('./parse.js'),
  capture: () => import('./capture.js'),
  e2e: () => import('./e2e.js'),
  encode: () => import('./encode.js'),
  mixed: () => import('./mixed.js'),
  replay: () => import('./replay.js'),
  soak: () => import('./soak.js'),
};

async function main(): Promise<void> {
  const load = name ? benches[name] : undefined;
  if (!load) {
    process.stderr.write(`usage: npm run bench -- ${Object.keys(benches).join('|')} [args]\n`);
    process.exit(2);
  }
  const mod = await load();
  // the bench's entry is its `bench…` export (a module may export classes or helpers beside it)
  const isFn = (v: unknown): v is (a: string[]) => Promise<void> => typeof v === 'function';
  const entry = Object.entries(mod).find(([k, v]) => k.startsWith('bench') && isFn(v))?.[1];
  const fn = isFn(entry) ? entry : Object.values(mod).find(isFn);
  if (!fn) throw new Error(`bench ${name} exports no function`);
  await fn(args);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
