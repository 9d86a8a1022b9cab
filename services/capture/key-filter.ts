/**
 * Database selection and key filters at capture (`--dbs`, `--include`, `--exclude`). Globs follow
 * Redis's own pattern rules (as in KEYS/SCAN MATCH): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`.
 * Matching is on raw bytes (latin1), so binary keys are filtered exactly.
 */
export interface KeyFilterOptions {
  dbs?: number[];
  include?: string[];
  exclude?: string[];
}

export class KeyFilter {
  private readonly dbs: Set<number> | null;
  private readonly include: RegExp[];
  private readonly exclude: RegExp[];

  constructor(opts: KeyFilterOptions) {
    this.dbs = opts.dbs ? new Set(opts.dbs) : null;
    this.include = (opts.include ?? []).map(globToRegExp);
    this.exclude = (opts.exclude ?? []).map(globToRegExp);
  }

  dbSelected(db: number): boolean {
    return this.dbs === null || this.dbs.has(db);
  }

  keySelected(key: Buffer): boolean {
    if (this.include.length === 0 && this.exclude.length === 0) return true;
    const s = key.toString('latin1');
    if (this.include.length > 0 && !this.include.some((r) => r.test(s))) return false;
    return !this.exclude.some((r) => r.test(s));
  }

  get filtersKeys(): boolean {
    return this.include.length > 0 || this.exclude.length > 0;
  }
}

/** Redis glob → anchored RegExp over latin1 strings. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') re += '[\\s\\S]*';
    else if (c === '?') re += '[\\s\\S]';
    else if (c === '\\' && i + 1 < glob.length) re += escape(glob[++i]);
    else if (c === '[') {
      let j = i + 1;
      let cls = '';
      if (glob[j] === '^') {
        cls += '^';
        j++;
      }
      for (; j < glob.length && glob[j] !== ']'; j++) {
        if (glob[j] === '\\' && j + 1 < glob.length) cls += escape(glob[++j]);
        else if (glob[j] === '-' && cls.length > 0 && glob[j + 1] !== ']') cls += '-';
        else cls += escape(glob[j]);
      }
      if (j >= glob.length) re += escape('['); // unterminated: a literal '[' as Redis does
      else {
        re += `[${cls}]`;
        i = j;
      }
    } else re += escape(c);
  }
  return new RegExp(`^${re}$`, 's');
}

function escape(c: string): string {
  return c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}
