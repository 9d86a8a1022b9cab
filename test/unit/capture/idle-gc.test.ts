/**
 * idle-gc.ts: one full collection once a burst is over (enough bytes moved, then quiet checks),
 * never during the burst nor after a trickle; scavenges paced by ArrayBuffer growth.
 */
import { describe, expect, it } from 'vitest';
import { collectIfIdle, noteActivity, paceExternal } from '../../../services/capture/idle-gc.js';

describe('idle collection', () => {
  it('collects once after a burst, when two checks in a row were quiet', () => {
    collectIfIdle(); // settle state left by other tests in this worker
    noteActivity(40 * 1024 * 1024); // a burst
    expect(collectIfIdle()).toBe(false); // that check saw the burst
    noteActivity(100 * 1024); // a trickle (heartbeats) is quiet
    expect(collectIfIdle()).toBe(false); // one quiet check
    expect(collectIfIdle()).toBe(true); // two: collected
    expect(collectIfIdle()).toBe(false); // and only once
    expect(collectIfIdle()).toBe(false);
  });

  it('does not collect after small amounts, however quiet', () => {
    for (let i = 0; i < 10; i++) {
      noteActivity(1024 * 1024);
      expect(collectIfIdle()).toBe(false);
    }
  });

  it('paces scavenges by ArrayBuffer growth without keeping what it frees', async () => {
    paceExternal();
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 60; i++) {
      Buffer.alloc(1024 * 1024); // garbage
      paceExternal();
      // it looks at memory at most every 50 ms: data arriving a few MB per 50 ms
      if (i % 4 === 3) await new Promise((r) => setTimeout(r, 55));
    }
    // at most ~24 MB of it can be left between two scavenges (plus what V8 keeps on its own)
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(40 * 1024 * 1024);
  });
});
