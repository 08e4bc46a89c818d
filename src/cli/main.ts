#!/usr/bin/env node
/**
 * The `velero-download` command's entry. It only checks the Node version, in syntax every Node since
 * 14 parses, before anything else is loaded: the rest uses what only Node 24 has (built-ins such as
 * tls.getCACertificates among them), and an older Node would otherwise stop with a SyntaxError or a
 * missing export while linking, before a line of it ran.
 */
const major = Number(process.versions.node.split('.')[0]);
if (!(major >= 24)) {
  process.stderr.write(`velero-download: needs Node 24 or later; this is Node ${process.versions.node} (${process.execPath})\n`);
  process.exit(1);
}
const { main } = await import('./process.ts');
await main();
