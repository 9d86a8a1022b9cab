/** The local stack's settings, as `npm run stack -- env` prints them (set by the global setup). */
import { stackEnv } from '../../services/stack/stack.js';

export function stack(): { kafka: string; registry: string; source: string; destination: string; cluster: string[] } {
  const env = { ...stackEnv(), ...pick(process.env) };
  return {
    kafka: env.REPLISTREAM_KAFKA,
    registry: env.REPLISTREAM_REGISTRY,
    source: env.REPLISTREAM_SOURCE,
    destination: env.REPLISTREAM_DESTINATION,
    cluster: (env.REPLISTREAM_CLUSTER ?? '').split(',').filter(Boolean),
  };
}

function pick(e: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(e)) if (k.startsWith('REPLISTREAM_') && v) out[k] = v;
  return out;
}

/** A unique name per test, so tests sharing the stack never see each other's topics or groups. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
}
