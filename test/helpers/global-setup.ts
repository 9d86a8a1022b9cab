/**
 * Integration tests run against the local stack (real Kafka, registry and Redis). When it is not
 * running, bring it up for this run and take it down afterwards, so no process outlives the tests.
 * The services the tests spawn (test/helpers/processes.ts) run the compiled build in dist/ when
 * it is current: compile it first, meanwhile, when it is missing or older than the sources.
 */
import { down, stackEnv, status, up } from '../../services/stack/stack.js';
import { ensureBuild } from './processes.js';

export default async function setup(): Promise<() => Promise<void>> {
  // Take the stack down afterwards only when this run started it from nothing: a stack someone
  // else is using (a developer, a parallel run) is left running, with missing parts restarted.
  const before = await status();
  const wasUp = before.some((p) => p.pid !== null || p.answers);
  await Promise.all([up({ cluster: true, timeoutMs: 180_000 }), ensureBuild()]); // up: idempotent, adds only what is missing
  for (const [k, v] of Object.entries(stackEnv())) process.env[k] ??= v;
  return async () => {
    if (!wasUp) await down();
  };
}
