/** Rewrites the settings table between the markers in README.md. */
import { readFileSync, writeFileSync } from 'node:fs';
import { settingsTable } from './readme-table.js';

const BEGIN = '<!-- settings:begin -->';
const END = '<!-- settings:end -->';
const readme = readFileSync('README.md', 'utf8');
const a = readme.indexOf(BEGIN);
const b = readme.indexOf(END);
if (a < 0 || b < a) throw new Error(`README.md lacks the ${BEGIN} … ${END} markers`);
writeFileSync('README.md', readme.slice(0, a + BEGIN.length) + '\n' + settingsTable() + '\n' + readme.slice(b));
