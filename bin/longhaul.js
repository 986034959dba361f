#!/usr/bin/env node
// The `longhaul` command. The sources are TypeScript, run by Node's type stripping (Node >= 24).
// The partner commands (jobs, dead-letters, deliveries) only talk HTTP: they load the client, not the service.
import { isPartnerCommand, runPartnerCommand } from '../src/cli/partner.ts';

const args = process.argv.slice(2);
const code = isPartnerCommand(args) ? await runPartnerCommand(args) : await (await import('../src/cli.ts')).cli(args);
if (code >= 0) process.exit(code);
