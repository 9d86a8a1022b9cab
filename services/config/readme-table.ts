/** The README's settings table, generated from OPTIONS (`npm run docs:config` rewrites it). */
import { OPTIONS, envName } from './options.js';

export function settingsTable(): string {
  const rows = OPTIONS.map((o) => {
    const cmds = o.commands === 'all' ? 'all' : o.commands.join(', ');
    const def = o.default === undefined ? '' : Array.isArray(o.default) ? '' : `\`${String(o.default)}\``;
    return `| \`--${o.name}\` | \`${envName(o.name)}\` | ${cmds} | ${def} | ${o.description.replace(/\|/g, '\\|')} |`;
  });
  return ['| flag | environment | commands | default | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}
