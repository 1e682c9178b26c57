#!/usr/bin/env node
// Runs the test suite with the native add-on (when built), then the model suites again on plain
// tfjs-wasm and on the cpu backend, so the fallback paths stay correct. Prints one closing
// "Tests: N passed, N failed" line for all runs.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const extra = process.argv.slice(2);
const MODEL_SUITES = ['tests/reference.test.ts', 'tests/architectures.test.ts', 'tests/gradients.test.ts', 'tests/prefix-cache.test.ts'];
const dir = mkdtempSync(join(tmpdir(), 'llmbox-test-'));
const runs = [
  { name: 'default', env: {}, files: extra },
  { name: 'plain tfjs-wasm', env: { LLMBOX_NATIVE: '0', LLMBOX_QUIET: '1' }, files: extra.length ? extra : MODEL_SUITES },
  { name: 'cpu backend', env: { LLMBOX_BACKEND: 'cpu' }, files: extra.length ? extra : MODEL_SUITES },
];
let passed = 0, failed = 0, skipped = 0, code = 0;
for (const run of runs) {
  const out = join(dir, `${run.name.replace(/\W+/g, '-')}.json`);
  console.log(`\n== tests: ${run.name}`);
  const r = spawnSync('npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${out}`, ...run.files], {
    stdio: 'inherit',
    env: { ...process.env, ...run.env },
  });
  try {
    const j = JSON.parse(readFileSync(out, 'utf8'));
    passed += j.numPassedTests;
    failed += j.numFailedTests;
    skipped += j.numPendingTests + (j.numTodoTests ?? 0);
  } catch {
    failed += 1; // the runner died before writing its report
  }
  if (r.status !== 0) code = r.status ?? 1;
}
console.log(`\nTests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(code || (failed > 0 ? 1 : 0));
