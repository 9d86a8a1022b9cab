/**
 * The node flag the applier is meant to run with: V8's young generation at twice its default.
 *
 * Why: an applier under load keeps its events alive for a few tens of milliseconds (fetched,
 * planned, in the transaction being written), longer than the default young generation (16 MB
 * semi-spaces) takes to fill at 100,000 events/s. Each scavenge then copies the events in flight,
 * and those that survive two are promoted and collected again in the old generation. With 32 MB
 * semi-spaces most of them die before the next scavenge: in interleaved runs on two cores the
 * applier used 3.8 / 4.0 CPU-s per 10 s of 100,000 SET/s against 4.8 / 5.2 with the default,
 * 1.7 against 1.9–2.1 at 20,000 SET/s, and a 1M-key full sync took 9.6 / 10.9 CPU-s of both services
 * against 11.1 / 11.9. It costs up to 32 MB more RSS; capture gained nothing from it, so it keeps
 * the default (its memory has less room under the 300 MB bound).
 *
 * Node takes this flag only on its command line or in NODE_OPTIONS, never at run time, so it is
 * set where the applier is started: docker-compose.yml, the Kubernetes applier manifest, the
 * tests' and benches' process helper. An applier started without it says so once.
 */
export const APPLIER_NODE_FLAG = '--max-semi-space-size=32';

/** The log line for an applier whose node was started without any young generation size; else null. */
export function youngGenerationHint(execArgv: readonly string[], nodeOptions: string | undefined): string | null {
  const set = (arg: string) => /^--max[-_]semi[-_]space[-_]size(=|$)/.test(arg);
  if (execArgv.some(set)) return null;
  if ((nodeOptions ?? '').split(/\s+/).some(set)) return null;
  return `node runs with its default young generation: start the applier with NODE_OPTIONS=${APPLIER_NODE_FLAG} (as the image's compose and Kubernetes files do) for about a fifth less CPU under load`;
}
