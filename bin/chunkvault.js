#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node
// The chunkvault command (package.json "bin"). Before it runs any code, node reads and parses
// every certificate in NODE_EXTRA_CA_CERTS: ~50 ms per command on a machine that points it at
// the system bundle. chunkvault makes no TLS connections, so node starts without it.
// The CLI is a CommonJS bundle (see package.json "build"), required rather than imported.
import { createRequire } from 'node:module';

const { main } = createRequire(import.meta.url)('../dist/cli/main.cjs');
process.exitCode = await main(process.argv);
