#!/usr/bin/env node
// The `longhaul` command. The sources are TypeScript, run by Node's type stripping (Node >= 24).
import { cli } from '../src/cli.ts';

const code = await cli(process.argv.slice(2));
if (code >= 0) process.exit(code);
