/**
 * The life of a sync task as an operator sees it, one small state machine per service (capture,
 * each applier), and the state of the whole task (capture + its applier groups) derived from them.
 *
 *   not-started → prechecking → precheck-failed
 *                             → initializing (full sync) ⇄ synchronizing → completed
 *   any running state → paused → back to the state it left;   any state → failed
 *
 * Pure: no timers, no I/O; the services move it and /status, `replistream status`, the metrics and
 * the status page read it. An illegal move is refused (returns false) rather than thrown: a late
 * event from a pipeline (a snapshot end arriving after a failure) must not crash the service or
 * bring a failed task back to life.
 */

export const TASK_STATES = ['not-started', 'prechecking', 'precheck-failed', 'initializing', 'synchronizing', 'paused', 'failed', 'completed'] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** What the operator reads: the reference's wording. */
export const TASK_STATE_LABELS: Record<TaskState, string> = {
  'not-started': 'not started',
  prechecking: 'prechecking',
  'precheck-failed': 'precheck failed',
  initializing: 'initializing (full sync)',
  synchronizing: 'synchronizing',
  paused: 'paused',
  failed: 'failed',
  completed: 'completed',
};

const NEXT: Record<TaskState, readonly TaskState[]> = {
  'not-started': ['prechecking'],
  // a service resuming a stored position skips the full sync
  prechecking: ['precheck-failed', 'initializing', 'synchronizing'],
  // the precheck can be run again once the operator fixed what it named
  'precheck-failed': ['prechecking'],
  initializing: ['synchronizing', 'paused', 'completed'],
  // the source may ask for a new full sync at any time (a backlog overrun)
  synchronizing: ['initializing', 'paused', 'completed'],
  paused: ['initializing', 'synchronizing'],
  failed: [],
  completed: [],
};

/** Why a task failed, and what the operator should change. */
export interface TaskFailure {
  reason: string;
  /** The setting to change (flag name), when the fix is configuration. */
  setting?: string;
  /** The server at fault (redacted URL or host:port), when it is one. */
  server?: string;
  /** Error code of the underlying error. */
  code?: string;
}

export interface TaskTransition {
  from: TaskState;
  to: TaskState;
  at: number;
  detail?: string;
}

export interface TaskStateView {
  state: TaskState;
  label: string;
  /** When the current state was entered (epoch ms). */
  since: number;
  failure: TaskFailure | null;
  /** The last transitions, oldest first. */
  history: TaskTransition[];
}

const HISTORY = 20;

export class TaskStateMachine {
  private current: TaskState = 'not-started';
  private enteredAt: number;
  private pausedFrom: TaskState | null = null;
  private failureInfo: TaskFailure | null = null;
  private readonly transitions: TaskTransition[] = [];

  constructor(
    private readonly now: () => number = Date.now,
    private readonly onChange?: (t: TaskTransition) => void,
  ) {
    this.enteredAt = now();
  }

  get state(): TaskState {
    return this.current;
  }

  get failure(): TaskFailure | null {
    return this.failureInfo;
  }

  can(to: TaskState): boolean {
    return to === 'failed' ? this.current !== 'failed' && this.current !== 'completed' : NEXT[this.current].includes(to);
  }

  /** Moves to `to` when that is a legal move; staying in the same state is a no-op (true). */
  to(to: TaskState, detail?: string): boolean {
    if (to === this.current) return true;
    if (to === 'paused') return this.pause();
    if (to === 'failed') return this.fail({ reason: detail ?? 'failed' });
    if (!this.can(to)) return false;
    this.move(to, detail);
    return true;
  }

  /** A precheck item failed: the task does not start until it is fixed and run again. */
  precheckFailed(failure: TaskFailure): boolean {
    if (!this.can('precheck-failed')) return false;
    this.failureInfo = failure;
    this.move('precheck-failed', failure.reason);
    return true;
  }

  fail(failure: TaskFailure): boolean {
    if (!this.can('failed')) return false;
    this.failureInfo = failure;
    this.move('failed', failure.reason);
    return true;
  }

  pause(): boolean {
    if (!NEXT[this.current].includes('paused')) return false;
    this.pausedFrom = this.current;
    this.move('paused');
    return true;
  }

  /** Back to the state the pause interrupted. */
  resume(): boolean {
    if (this.current !== 'paused') return false;
    const back = this.pausedFrom ?? 'synchronizing';
    this.pausedFrom = null;
    this.move(back, 'resumed');
    return true;
  }

  /**
   * Where the pipeline stands now (initializing while a full sync runs, synchronizing after):
   * applied unless the task is paused (it resumes into it then) or ended.
   */
  follow(running: 'initializing' | 'synchronizing'): void {
    if (this.current === 'paused') this.pausedFrom = running;
    else if (this.current === 'initializing' || this.current === 'synchronizing' || this.current === 'prechecking') this.to(running);
  }

  view(): TaskStateView {
    return { state: this.current, label: TASK_STATE_LABELS[this.current], since: this.enteredAt, failure: this.failureInfo, history: [...this.transitions] };
  }

  private move(to: TaskState, detail?: string): void {
    const t: TaskTransition = { from: this.current, to, at: this.now(), ...(detail ? { detail } : {}) };
    this.current = to;
    this.enteredAt = t.at;
    if (to === 'prechecking') this.failureInfo = null;
    this.transitions.push(t);
    if (this.transitions.length > HISTORY) this.transitions.shift();
    this.onChange?.(t);
  }
}

/**
 * The state of a whole task from the states of its services (capture and each applier group):
 * the most urgent one wins — a failure anywhere fails the task, a service still prechecking or
 * initializing holds it there, and it is completed only when every service is.
 */
export function combinedTaskState(states: TaskState[]): TaskState {
  if (states.length === 0) return 'not-started';
  const order: TaskState[] = ['failed', 'precheck-failed', 'prechecking', 'not-started', 'initializing', 'paused', 'synchronizing'];
  for (const s of order) if (states.includes(s)) return s;
  return 'completed';
}
