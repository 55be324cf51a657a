#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node
// The chunkvault command (package.json "bin"). Before it runs any code, node reads and parses
// every certificate in NODE_EXTRA_CA_CERTS: ~50 ms per command on a machine that points it at
// the system bundle. Only an https S3 endpoint makes TLS connections, and it trusts the CAs of
// AWS_CA_BUNDLE as the AWS CLI does (store/backend/s3-options.ts), so node starts without it.
// The CLI is a CommonJS bundle (see package.json "build"), required rather than imported.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const bundle = fileURLToPath(new URL('../dist/cli/main.cjs', import.meta.url));

/** The CLI, or null when the package was never built (a clone without `npm run build`). */
function loadCli() {
  try {
    return require(bundle);
  } catch (err) {
    // Checked only once require failed: a module missing inside a built bundle is a different story.
    if (err?.code === 'MODULE_NOT_FOUND' && !existsSync(bundle)) return null;
    throw err;
  }
}

const cli = loadCli();
if (cli) {
  process.exitCode = await cli.main(process.argv);
} else {
  process.stderr.write(`chunkvault is not built: run 'npm run build' in ${fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')}\n`);
  process.exitCode = 2;
}
