/**
 * Integration tests run against the local stack (real Kafka, registry and Redis). When it is not
 * running, bring it up for this run and take it down afterwards, so no process outlives the tests.
 */
import { down, stackEnv, status, up } from '../../services/stack/stack.js';

export default async function setup(): Promise<() => Promise<void>> {
  const before = await status();
  const wasUp = before.length > 0 && before.every((p) => p.answers);
  await up({ cluster: true, timeoutMs: 180_000 }); // idempotent: adds only what is missing
  for (const [k, v] of Object.entries(stackEnv())) process.env[k] ??= v;
  return async () => {
    if (!wasUp) await down();
  };
}
