#!/usr/bin/env node
import { existsSync } from 'node:fs';

const entry = new URL('../dist/lib/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('llmbox: not built yet; run `npm run build` in the llmbox folder first\n');
  process.exit(1);
}
const { main } = await import(entry.href);
await main();
