// Slow suite (a notebook run through Jupyter): npm run test:fast leaves it out.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CellQueue, cellError } from '../kernel/cells.js';
import { executeNotebook, kernelPrefix } from './helpers/jupyter.js';
import { tmp } from './helpers/models.js';

const JUPYTER = spawnSync('sh', ['-c', 'command -v jupyter']).status === 0 || !!process.env.CI;

/** An executor that fails the cells whose code starts with "fail", reporting as tslab does. */
function scripted(report: (...a: unknown[]) => void, ran: string[]) {
  return {
    execute: async (code: string) => {
      await new Promise((r) => setTimeout(r, 5));
      ran.push(code);
      if (!code.startsWith('fail')) return true;
      report(new RangeError(`${code} went wrong`));
      return false;
    },
  };
}

describe('kernel cells', () => {
  it('a failed cell is an error with its name and message; only the requests queued behind it are aborted', async () => {
    const ran: string[] = [];
    const queue: CellQueue = new CellQueue(scripted((...a) => queue.report(...a), ran));
    const errors: string[] = [];
    const first = queue.run('a');
    const failing = queue.run('fail-b', { onError: (e) => errors.push(e.evalue) });
    const behind = queue.run('c');
    expect(await first).toEqual({ status: 'ok', execution_count: 1 });
    expect(await failing).toEqual({
      status: 'error',
      execution_count: 2,
      ename: 'RangeError',
      evalue: 'fail-b went wrong',
      traceback: ['RangeError: fail-b went wrong'],
    });
    expect(await behind).toEqual({ status: 'aborted' });
    expect(errors).toEqual(['fail-b went wrong']);
    // Sent after the error reply was read (nbclient, a person re-running): it runs.
    expect(await queue.run('d')).toEqual({ status: 'ok', execution_count: 3 });
    expect(ran).toEqual(['a', 'fail-b', 'd']);
  });

  it('stop_on_error false (--allow-errors) aborts nothing', async () => {
    const ran: string[] = [];
    const queue: CellQueue = new CellQueue(scripted((...a) => queue.report(...a), ran));
    const failing = queue.run('fail', { stopOnError: false });
    const behind = queue.run('next');
    expect((await failing).status).toBe('error');
    expect(await behind).toEqual({ status: 'ok', execution_count: 2 });
  });

  it('TypeScript diagnostics and thrown non-errors read as errors', () => {
    const diag = cellError([['%s%d:%d - %s', '', 1, 7, "Type 'string' is not assignable to type 'number'."]]);
    expect(diag).toEqual({
      ename: 'TypeScriptError',
      evalue: "1:7 - Type 'string' is not assignable to type 'number'.",
      traceback: ["TypeScriptError: 1:7 - Type 'string' is not assignable to type 'number'."],
    });
    expect(cellError([[42]])).toEqual({ ename: 'Error', evalue: '42', traceback: ['Error: 42'] });
    expect(cellError([]).evalue).toBe('the cell failed');
  });
});

describe.skipIf(!JUPYTER)('kernel cells under Jupyter', () => {
  const cell = (source: string) => ({ cell_type: 'code', metadata: {}, execution_count: null, outputs: [], source });
  const notebook = (dir: string) => {
    const file = join(dir, 'errors.ipynb');
    const cells = [
      cell("console.log('one')"),
      cell("throw new Error('boom in cell 2')"),
      cell("const n: number = 'x';"),
      cell("console.log('four')"),
      // Outside any project that depends on apache-arrow (this notebook's folder), a cell's declarations
      // still name llmbox's result types: tslab emits them, and an unnameable type fails the cell.
      cell("const t = llm.table([{ a: 5 }]);\nconst col = t.getChild('a')!;\nconsole.log(String(col.get(0)));"),
    ];
    writeFileSync(
      file,
      JSON.stringify({
        cells,
        metadata: { kernelspec: { name: 'llmbox', display_name: 'llmbox', language: 'typescript' } },
        nbformat: 4,
        nbformat_minor: 5,
      }),
    );
    return file;
  };
  const nbconvert = (file: string, out: string, prefix: string, extra: string[]) =>
    executeNotebook(file, { out, prefix, timeoutSeconds: 120, extra });

  it('errors become error outputs, the cells after them still run, and shutdown is clean', () => {
    const prefix = kernelPrefix();
    const out = tmp();
    const file = notebook(tmp());
    const run = nbconvert(file, out, prefix, ['--allow-errors']);
    expect(run.status, run.stderr.slice(-2000)).toBe(0);
    expect(run.stderr).not.toMatch(/Socket is closed|UncaughtException|Unhandled/);
    const nb = JSON.parse(readFileSync(join(out, 'errors.ipynb'), 'utf8')) as {
      cells: {
        execution_count: number | null;
        outputs: { output_type: string; ename?: string; evalue?: string; text?: string[] | string }[];
      }[];
    };
    const outs = nb.cells.map((c) => c.outputs);
    expect(outs[0].map((o) => o.output_type)).toEqual(['stream']);
    expect(outs[1]).toEqual([
      { output_type: 'error', ename: 'Error', evalue: 'boom in cell 2', traceback: ['Error: boom in cell 2'] },
    ]);
    expect(outs[2][0]).toMatchObject({ output_type: 'error', ename: 'TypeScriptError' });
    expect(outs[2][0].evalue).toMatch(/not assignable to type 'number'/);
    expect(outs[3]).toEqual([{ output_type: 'stream', name: 'stdout', text: ['four\n'] }]);
    expect(outs[4]).toEqual([{ output_type: 'stream', name: 'stdout', text: ['5\n'] }]);
    expect(nb.cells.map((c) => c.execution_count)).toEqual([1, 2, 3, 4, 5]);

    // Without --allow-errors the run stops at the failure and says why.
    const strict = nbconvert(file, tmp(), prefix, []);
    expect(strict.status).not.toBe(0);
    expect(strict.stderr).toContain('boom in cell 2');
  }, 300_000);
});
