#!/usr/bin/env node
/** The gateway's entry point: parses the configuration, then runs the gateway in the mode it names. */
import { runGateway } from './compose/gateway.ts';
import { ConfigurationError } from './compose/mode.ts';
import { loadConfig } from './config/config.ts';
import { VERSION } from './version.ts';

/** Prints every configuration problem at once, wherever it was found; the caller exits with status 2. */
function reportConfigurationErrors(errors: readonly string[]): void {
  console.error(`velero-download-server: invalid configuration:\n${errors.map((e) => `  - ${e}`).join('\n')}\nRun with --help for the flags.`);
}

const result = loadConfig(process.argv.slice(2), process.env);
switch (result.kind) {
  case 'help':
    process.stdout.write(result.text + '\n');
    break;
  case 'version':
    process.stdout.write(VERSION + '\n');
    break;
  case 'errors':
    reportConfigurationErrors(result.errors);
    process.exitCode = 2;
    break;
  case 'config':
    runGateway(result.config).catch((err: unknown) => {
      if (err instanceof ConfigurationError) {
        reportConfigurationErrors(err.problems);
        process.exit(2);
      }
      console.error(`velero-download-server: ${(err as Error).message}`);
      process.exit(1);
    });
}
