// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
// Slow suite (the example notebooks under Jupyter, checked in headless Chromium): npm run test:fast leaves it out.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Table, vectorFromArray } from 'apache-arrow';
import { isDisplayable, mimeBundle, resetPlotly } from '../kernel/display.js';
import { installKernel, kernelDir, kernelSpec } from '../kernel/install.js';
import { prelude } from '../kernel/start.js';
import { progressHTML } from '../lib/report/display.js';
import { Figure } from '../lib/report/figure.js';
import { findChromium, launchChromium } from '../lib/report/browser.js';
import { executeNotebook, kernelPrefix } from './helpers/jupyter.js';
import { tmp } from './helpers/models.js';

const ROOT = resolve(import.meta.dirname, '..');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
// CI installs Jupyter and Chromium (.ci/run), so there a missing tool fails the test instead of skipping it.
const REQUIRED = !!process.env.CI;
const JUPYTER = has('jupyter') || REQUIRED;
const CHROMIUM = findChromium() !== null || REQUIRED;
const ARTIFACTS = join(ROOT, 'artifacts', 'notebooks');

interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, string | string[]>;
}
const joined = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join('') : (v ?? ''));

describe('kernel: install and display hooks', () => {
  it('writes a kernelspec that starts this llmbox under this Node', () => {
    const prefix = tmp();
    const dir = installKernel({ prefix });
    expect(dir).toBe(join(prefix, 'share', 'jupyter', 'kernels', 'llmbox'));
    const spec = JSON.parse(readFileSync(join(dir, 'kernel.json'), 'utf8'));
    expect(spec.argv).toEqual([
      process.execPath,
      join(ROOT, 'bin', 'llmbox.js'),
      'kernel',
      'start',
      '--config-path',
      '{connection_file}',
    ]);
    expect(spec.display_name).toBe('llmbox (TypeScript)');
    expect(kernelSpec().language).toBe('typescript');
    expect(kernelDir({ user: true, name: 'x' })).toMatch(/jupyter[/\\]kernels[/\\]x$/);
  });

  it('shows figures with plotly.js embedded once, tables and results as HTML with a text fallback', () => {
    resetPlotly();
    const fig = new Figure([{ type: 'bar', x: ['a'], y: [1] }]);
    const first = mimeBundle(fig)!['text/html'];
    const second = mimeBundle(fig)!['text/html'];
    expect(first).toMatch(/^<script type="text\/javascript">[\s\S]*plotly\.js v\d/);
    expect(first.length).toBeGreaterThan(1_000_000);
    expect(second).not.toMatch(/plotly\.js v\d/);
    expect(second).toContain('Plotly.newPlot(');
    const table = new Table({ task: vectorFromArray(['arc_easy']), value: vectorFromArray([0.25]) });
    const b = mimeBundle(table)!;
    expect(b['text/html']).toContain('<td>arc_easy</td>');
    expect(b['text/plain']).toMatch(/^task\s+value\narc_easy\s+0\.2500$/);
    expect(isDisplayable({ toHTML: () => '<b>x</b>' })).toBe(true);
    expect(isDisplayable({ a: 1 })).toBe(false);
    expect(mimeBundle(42)).toBeNull();
    expect(progressHTML('arc_easy', 3, 12, '1.5/s')).toMatch(
      /<progress value="3" max="12"[^>]*><\/progress> <code>arc_easy<\/code> 3\/12 \(25%\) 1\.5\/s/,
    );
  });

  it('the prelude gives cells a typed `llm`: type errors in later cells are caught', async () => {
    const { createRequire } = await import('node:module');
    const req = createRequire(import.meta.url);
    const { createConverter } = req('tslab/dist/converter');
    const { createExecutor } = req('tslab/dist/executor');
    const index = join(ROOT, 'dist', 'lib', 'index.js');
    expect(existsSync(index), 'run `npm run build` first: the kernel loads the compiled library').toBe(true);
    (globalThis as Record<string, unknown>).__llmbox = await import(index);
    const conv = createConverter({ isJS: false, isBrowser: false });
    const errors: string[] = [];
    const logs: unknown[] = [];
    const ex = createExecutor(
      ROOT,
      { node: conv, browser: conv, close: () => conv.close() },
      { log: (v: unknown) => logs.push(v), error: (...a: unknown[]) => errors.push(a.join(' ')) },
    );
    try {
      expect(await ex.execute(prelude(index))).toBe(true);
      expect(await ex.execute("typeof llm.load === 'function' && typeof llmbox.scoresFigure === 'function'")).toBe(
        true,
      );
      expect(logs.pop()).toBe(true);
      expect(await ex.execute("const n: number = llm.load('stories260K');")).toBe(false);
      expect(errors.join('\n')).toMatch(/Chain<LanguageModel>.*not assignable to type 'number'/);
    } finally {
      conv.close();
    }
  });
});

describe('kernel lifetime', () => {
  it('exits when the process that started it is killed (an orphaned kernel would run on)', async () => {
    const dir = tmp();
    const ports = await Promise.all([0, 1, 2, 3, 4].map(() => freePort()));
    const conn = join(dir, 'kernel.json');
    writeFileSync(
      conn,
      JSON.stringify({
        shell_port: ports[0],
        iopub_port: ports[1],
        stdin_port: ports[2],
        control_port: ports[3],
        hb_port: ports[4],
        ip: '127.0.0.1',
        key: 'k',
        transport: 'tcp',
        signature_scheme: 'hmac-sha256',
        kernel_name: 'llmbox',
      }),
    );
    const bin = join(ROOT, 'bin', 'llmbox.js');
    // A stand-in client: it starts the kernel as Jupyter does (JPY_PARENT_PID names the client), prints
    // the kernel's pid and waits; then it is killed with -9.
    const client = spawn(process.execPath, [
      '-e',
      `const c = require('child_process').spawn(process.execPath, [${JSON.stringify(bin)}, 'kernel', 'start', '--config-path', ${JSON.stringify(conn)}], { stdio: 'ignore', env: { ...process.env, JPY_PARENT_PID: String(process.pid) } }); console.log(c.pid); setInterval(() => {}, 1000);`,
    ]);
    const kernelPid = Number(
      await new Promise<string>((resolve) => client.stdout.once('data', (d) => resolve(String(d).trim()))),
    );
    const alive = () => {
      try {
        process.kill(kernelPid, 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(alive()).toBe(true);
    client.kill('SIGKILL');
    const deadline = Date.now() + 60_000;
    while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    const survived = alive();
    if (survived) process.kill(kernelPid, 'SIGKILL');
    expect(survived).toBe(false);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe.skipIf(!CHROMIUM)('figures rendered by headless Chromium', () => {
  it('saves SVG and PNG drawn by plotly.js', async () => {
    const dir = tmp();
    const fig = new Figure([{ type: 'bar', x: ['a', 'b'], y: [1, 2] }], { title: { text: 'two bars' } });
    const svg = readFileSync(await fig.save(join(dir, 'f.svg')), 'utf8');
    expect(svg).toMatch(/^<svg class="main-svg"/);
    expect(svg).toContain('two bars');
    expect((svg.match(/class="point"/g) ?? []).length).toBe(2);
    const png = readFileSync(await fig.save(join(dir, 'f.png'), { width: 400, height: 300, scale: 1 }));
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.readUInt32BE(16)).toBe(400);
    expect(png.readUInt32BE(20)).toBe(300);
  });
});

describe.skipIf(!JUPYTER || !CHROMIUM)(
  'notebooks: executed headless with the llmbox kernel, then seen in a browser',
  () => {
    // Example notebooks, and the tutorials in their fast mode (fewer steps; each says which mode it ran in).
    const NOTEBOOKS = ['notebooks', 'tutorials'].flatMap((dir) =>
      readdirSync(join(ROOT, dir))
        .filter((f) => f.endsWith('.ipynb'))
        .sort()
        .map((f) => `${dir}/${f}`),
    );

    it('lists the example notebooks and the tutorials', () => {
      expect(NOTEBOOKS).toEqual([
        'notebooks/01-quick-start.ipynb',
        'notebooks/02-compare-models.ipynb',
        'notebooks/03-data-mixture.ipynb',
        'notebooks/04-alignment.ipynb',
        'tutorials/01-pretraining.ipynb',
        'tutorials/02-adaptation.ipynb',
        'tutorials/03-alignment.ipynb',
        'tutorials/04-utilization.ipynb',
        'tutorials/05-evaluation.ipynb',
        'tutorials/06-efficiency.ipynb',
      ]);
    });

    it.each(NOTEBOOKS)(
      '%s runs without errors and shows tables and charts in Chromium',
      async (path) => {
        const [dir, name] = path.split('/');
        const prefix = kernelPrefix();
        const out = tmp();
        const env = { ...process.env, JUPYTER_PATH: join(prefix, 'share', 'jupyter') };
        const run = executeNotebook(join(ROOT, path), {
          out,
          prefix,
          timeoutSeconds: 600,
          cwd: join(ROOT, dir),
          env: { LLMBOX_TUTORIAL_FAST: '1' },
        });
        expect(run.status, run.stderr.slice(-3000)).toBe(0);
        const nb = JSON.parse(readFileSync(join(out, name), 'utf8')) as {
          cells: { cell_type: string; outputs?: Output[] }[];
        };
        const outputs = nb.cells.flatMap((c) => c.outputs ?? []);
        expect(outputs.filter((o) => o.output_type === 'error')).toEqual([]);
        expect(
          outputs.filter((o) => o.output_type === 'stream' && o.name === 'stderr').map((o) => joined(o.text)),
        ).toEqual([]);
        const html = outputs.map((o) => joined(o.data?.['text/html']));
        expect(html.filter((h) => h.includes('<table class="llmbox-table">')).length).toBeGreaterThanOrEqual(1);
        const plots = html.filter((h) => h.includes('class="llmbox-plot"'));
        expect(plots.length).toBeGreaterThanOrEqual(1);
        expect(html.filter((h) => /plotly\.js v\d/.test(h)).length).toBe(1); // plotly.js once per notebook
        expect(
          outputs.some((o) => o.output_type === 'display_data' && joined(o.data?.['text/html']).includes('<progress')),
        ).toBe(true);

        const page = join(out, name.replace(/\.ipynb$/, '.html'));
        const conv = spawnSync('jupyter', ['nbconvert', '--to', 'html', '--output-dir', out, join(out, name)], {
          encoding: 'utf8',
          env,
        });
        expect(conv.status, conv.stderr.slice(-2000)).toBe(0);
        const browser = await launchChromium();
        try {
          const tab = await browser.newPage({ viewport: { width: 1200, height: 900 } });
          await tab.goto(`file://${page}`, { waitUntil: 'load', timeout: 60_000 });
          await tab.waitForFunction(
            `[...document.querySelectorAll('.llmbox-plot')].every((d) => d.querySelector('.main-svg'))`,
            undefined,
            { timeout: 60_000 },
          );
          const seen = await tab.evaluate<{
            plots: number;
            drawn: number;
            traces: number[];
            tables: number;
            rows: number;
          }>(`(() => {
        const plots = [...document.querySelectorAll('.llmbox-plot')];
        const tables = [...document.querySelectorAll('table.llmbox-table')];
        return {
          plots: plots.length,
          drawn: plots.filter((p) => p.querySelector('svg.main-svg')).length,
          traces: plots.map((p) => p.querySelectorAll('g.trace path, g.trace .point').length),
          tables: tables.length,
          rows: tables.reduce((n, t) => n + t.querySelectorAll('tbody tr').length, 0),
        };
      })()`);
          expect(seen.plots).toBe(plots.length);
          expect(seen.drawn).toBe(seen.plots);
          expect(
            seen.traces.every((n) => n > 0),
            JSON.stringify(seen.traces),
          ).toBe(true);
          expect(seen.tables).toBe(html.filter((h) => h.includes('<table class="llmbox-table">')).length);
          expect(seen.rows).toBeGreaterThan(2);
          mkdirSync(ARTIFACTS, { recursive: true });
          await tab.screenshot({ path: join(ARTIFACTS, `${dir}-${name.replace(/\.ipynb$/, '.png')}`), fullPage: true });
        } finally {
          await browser.close();
        }
      },
      900_000,
    );
  },
);
