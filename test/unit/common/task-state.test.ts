import { describe, expect, it } from 'vitest';
import { combinedTaskState, TaskStateMachine } from '../../../services/common/task-state.js';

function machine() {
  let t = 1000;
  const changes: string[] = [];
  const m = new TaskStateMachine(
    () => (t += 10),
    (c) => changes.push(`${c.from}>${c.to}`),
  );
  return { m, changes };
}

describe('task state machine', () => {
  it('walks the reference path: not started, prechecking, initializing, synchronizing, completed', () => {
    const { m, changes } = machine();
    expect(m.state).toBe('not-started');
    expect(m.to('prechecking')).toBe(true);
    expect(m.to('initializing')).toBe(true);
    expect(m.to('synchronizing')).toBe(true);
    expect(m.to('completed')).toBe(true);
    expect(changes).toEqual(['not-started>prechecking', 'prechecking>initializing', 'initializing>synchronizing', 'synchronizing>completed']);
    expect(m.view().label).toBe('completed');
  });

  it('a failed precheck keeps the reason and the setting to fix, and can be run again', () => {
    const { m } = machine();
    m.to('prechecking');
    expect(m.precheckFailed({ reason: 'destination db 0 holds keys: a, b', setting: 'conflict-mode' })).toBe(true);
    expect(m.view()).toMatchObject({ state: 'precheck-failed', label: 'precheck failed', failure: { setting: 'conflict-mode' } });
    expect(m.to('initializing')).toBe(false);
    expect(m.to('prechecking')).toBe(true);
    expect(m.failure).toBeNull();
  });

  it('refuses to skip the precheck or to start from a terminal state', () => {
    const { m } = machine();
    expect(m.to('synchronizing')).toBe(false);
    expect(m.state).toBe('not-started');
    m.to('prechecking');
    m.to('synchronizing');
    expect(m.fail({ reason: 'destination refused a write', server: 'redis://d:6379' })).toBe(true);
    expect(m.to('synchronizing')).toBe(false);
    expect(m.pause()).toBe(false);
    expect(m.fail({ reason: 'again' })).toBe(false);
    expect(m.failure?.reason).toBe('destination refused a write');
  });

  it('pauses and resumes into the state it left, following the pipeline meanwhile', () => {
    const { m } = machine();
    m.to('prechecking');
    m.to('initializing');
    expect(m.pause()).toBe(true);
    expect(m.state).toBe('paused');
    m.follow('synchronizing'); // the snapshot ended while paused: resume goes there
    expect(m.state).toBe('paused');
    expect(m.resume()).toBe(true);
    expect(m.state).toBe('synchronizing');
    expect(m.resume()).toBe(false);
  });

  it('a new full sync while synchronizing goes back to initializing', () => {
    const { m } = machine();
    m.to('prechecking');
    m.follow('synchronizing');
    m.follow('initializing');
    expect(m.state).toBe('initializing');
    expect(m.view().history.map((h) => h.to)).toEqual(['prechecking', 'synchronizing', 'initializing']);
  });

  it('the whole task takes its most urgent service state', () => {
    expect(combinedTaskState(['synchronizing', 'initializing'])).toBe('initializing');
    expect(combinedTaskState(['synchronizing', 'failed', 'initializing'])).toBe('failed');
    expect(combinedTaskState(['synchronizing', 'paused'])).toBe('paused');
    expect(combinedTaskState(['completed', 'completed'])).toBe('completed');
    expect(combinedTaskState(['completed', 'synchronizing'])).toBe('synchronizing');
    expect(combinedTaskState([])).toBe('not-started');
  });
});
