#!/usr/bin/env node
// Runs the test suite with the native add-on (when built), then the model suites again on plain
// tfjs-wasm and on the cpu backend, so the fallback paths stay correct. Prints one closing
// "Tests: N passed, N failed" line for all runs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// Test files that read ../shared/data say so in their first line; without it they are skipped
// (and under CI, where the data must be there, that is an error).
const MARK = '// Needs ../shared/data';
const shared = resolve(root, '../shared/data');
const all = readdirSync(join(root, 'tests'))
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => `tests/${f}`);
const needsShared = all.filter((f) => readFileSync(join(root, f), 'utf8').startsWith(MARK));
const hasShared = existsSync(shared);
if (!hasShared) {
  if (process.env.CI) {
    console.error(`tests: ${shared} is missing; CI needs it (${needsShared.length} test files read it)`);
    process.exit(1);
  }
  console.log(
    `tests: ${shared} is not beside the checkout: skipping the ${needsShared.length} test files that need it (${needsShared.map((f) => f.slice(6, -8)).join(', ')})`,
  );
}
// --fast: pure logic and the small shipped model, in one run; files marked "// Slow suite" in their
// first lines (notebooks, Chromium, server processes, whole-benchmark runs) are left out.
const fast = process.argv.includes('--fast');
const isSlow = (f) =>
  readFileSync(join(root, f), 'utf8')
    .split('\n', 3)
    .some((l) => l.startsWith('// Slow suite'));
const keep = (files) => files.filter((f) => (hasShared || !needsShared.includes(f)) && !(fast && isSlow(f)));
const asked = process.argv.slice(2).filter((a) => a !== '--fast');
// No files named: everything (vitest's default) where the data is there, else the files that do not need it.
const extra = asked.length ? keep(asked) : hasShared && !fast ? [] : keep(all);
if (asked.length && !extra.length) {
  console.log('tests: every file named needs ../shared/data');
  process.exit(0);
}
// CLI and kernel tests run dist/: compile the current sources once (tests/helpers/build.ts does it
// for a plain `npx vitest`).
const tsc = spawnSync(
  process.execPath,
  [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')],
  { stdio: 'inherit' },
);
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
process.env.LLMBOX_TEST_BUILT = '1';
const MODEL_SUITES = [
  'tests/reference.test.ts',
  'tests/architectures.test.ts',
  'tests/gradients.test.ts',
  'tests/prefix-cache.test.ts',
  'tests/packed.test.ts',
  'tests/gptq.test.ts',
];
const dir = mkdtempSync(join(tmpdir(), 'llmbox-test-'));
const runs = [
  // The suites' expectations are the embedded default's (a machine with a GPU would otherwise pick webgpu
  // on its own); the webgpu suites ask for webgpu themselves.
  { name: fast ? 'fast' : 'default', env: { LLMBOX_BACKEND: process.env.LLMBOX_BACKEND ?? 'wasm' }, files: extra },
  {
    name: 'plain tfjs-wasm',
    env: { LLMBOX_NATIVE: '0', LLMBOX_QUIET: '1' },
    files: asked.length ? extra : MODEL_SUITES,
  },
  { name: 'cpu backend', env: { LLMBOX_BACKEND: 'cpu' }, files: asked.length ? extra : MODEL_SUITES },
].slice(0, fast ? 1 : 3);
let passed = 0,
  failed = 0,
  skipped = 0,
  code = 0;
for (const run of runs) {
  const out = join(dir, `${run.name.replace(/\W+/g, '-')}.json`);
  console.log(`\n== tests: ${run.name}`);
  const r = spawnSync(
    'npx',
    ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${out}`, ...run.files],
    {
      stdio: 'inherit',
      env: { ...process.env, ...run.env },
    },
  );
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
