import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { APPLIER_NODE_FLAG, youngGenerationHint } from '../../../services/applier/young-generation.js';

const root = new URL('../../../', import.meta.url);
const text = (path: string) => readFileSync(new URL(path, root), 'utf8');

describe('the applier young generation flag', () => {
  it('asks for the flag only when node was started without a semi-space size', () => {
    expect(youngGenerationHint([], undefined)).toContain(`NODE_OPTIONS=${APPLIER_NODE_FLAG}`);
    expect(youngGenerationHint(['--enable-source-maps'], '--max-old-space-size=512')).not.toBeNull();
    expect(youngGenerationHint([APPLIER_NODE_FLAG], undefined)).toBeNull();
    expect(youngGenerationHint([], `--trace-gc ${APPLIER_NODE_FLAG}`)).toBeNull();
    expect(youngGenerationHint(['--max_semi_space_size=64'], '')).toBeNull(); // V8 takes either spelling
  });

  it('is set wherever an applier is started: compose, Kubernetes, the tests and benches', () => {
    const compose = text('docker-compose.yml');
    const applierService = compose.slice(compose.indexOf('\n  applier:'));
    expect(applierService).toContain(`NODE_OPTIONS: ${APPLIER_NODE_FLAG}`);
    expect(text('deploy/kubernetes/applier-destination1.yaml')).toMatch(new RegExp(`name: NODE_OPTIONS\\s+value: ${APPLIER_NODE_FLAG}`));
    expect(text('test/helpers/processes.ts')).toContain('APPLIER_NODE_FLAG');
  });
});
