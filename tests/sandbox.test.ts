// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { describe, expect, it } from 'vitest';
import { SHARED_DATA } from './helpers/models.js';
import { readJsonl } from '../lib/data/files.js';
import { runPython } from '../lib/eval/sandbox.js';

const DATA = SHARED_DATA;

describe('code sandbox', () => {
  it('passes HumanEval canonical solutions and fails a wrong one', async () => {
    const rows = readJsonl(`${DATA}/humaneval/HumanEval.jsonl`).slice(0, 4) as Record<string, string>[];
    for (const r of rows) {
      const ok = await runPython(`${r.prompt}${r.canonical_solution}\n\n${r.test}\n\ncheck(${r.entry_point})\n`);
      expect(ok.status).toBe('passed');
      const wrong = await runPython(`${r.prompt}    return None\n\n${r.test}\n\ncheck(${r.entry_point})\n`);
      expect(wrong.status).toBe('failed');
    }
  });

  it('kills a program that runs past its time limit', async () => {
    const r = await runPython('while True:\n    pass\n', { timeoutMs: 1500 });
    expect(r.status).toBe('timeout');
  });

  it('denies memory beyond the limit', async () => {
    const r = await runPython('x = bytearray(2 * 1024 ** 3)\n', { memoryMb: 256 });
    expect(r.status).toBe('failed');
    expect(r.detail).toMatch(/MemoryError/);
  });

  it('gives no network and no process spawning, and runs in its own temp folder', async () => {
    const prog = [
      'import os, socket, subprocess, sys',
      'try:',
      '    socket.socket(socket.AF_INET, socket.SOCK_STREAM)',
      '    sys.exit(3)',
      'except PermissionError:',
      '    pass',
      'try:',
      '    subprocess.run(["true"])',
      '    sys.exit(4)',
      'except PermissionError:',
      '    pass',
      'assert os.getcwd() == "/sandbox", os.getcwd()',
      'assert "HOME" in os.environ and os.environ["HOME"] == os.getcwd()',
    ].join('\n');
    const r = await runPython(prog);
    expect(r.detail).toBe('');
    expect(r.status).toBe('passed');
  });
});
