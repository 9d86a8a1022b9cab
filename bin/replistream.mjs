#!/usr/bin/env node
// The `replistream` command. Runs the TypeScript sources through tsx's loader (a dependency),
// so there is no build step between a clone and a working CLI.
import { register } from 'tsx/esm/api';
register();
await import('../services/cli.ts');
