import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

/**
 * Compiles lib/ and kernel/ to dist/ before any test runs: the CLI and kernel tests start
 * bin/llmbox.js, which runs dist/, and must test the current sources, not an earlier build.
 * scripts/test.mjs builds once and sets LLMBOX_TEST_BUILT for its later runs.
 */
export default function setup(): void {
  if (process.env.LLMBOX_TEST_BUILT === '1') return;
  const root = resolve(import.meta.dirname, '../..');
  const r = spawnSync(
    process.execPath,
    [resolve(root, 'node_modules/typescript/bin/tsc'), '-p', resolve(root, 'tsconfig.json')],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`tsc failed, so dist/ would be stale:\n${r.stdout}${r.stderr}`);
}
