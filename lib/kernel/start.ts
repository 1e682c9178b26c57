import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { processAlive } from '../util/process.js';
import { isDisplayable, show } from './display.js';

/** The parts of tslab (1.0.x, CommonJS) the kernel is assembled from. */
interface Converter {
  close(): void;
}
interface Executor {
  execute(src: string): Promise<boolean>;
  interrupt(): void;
}
interface Tslab {
  createConverter(opts: { isJS: boolean; isBrowser: boolean }): Converter;
  createExecutor(root: string, convs: { node: Converter; browser: Converter; close(): void }, console: { log(...a: unknown[]): void; error(...a: unknown[]): void }): Executor;
  ZmqServer: new (handler: unknown, configPath: string) => { init(): void };
  JupyterHandlerImpl: new (executor: Executor, isJS: boolean) => unknown;
}

function loadTslab(): Tslab {
  const req = createRequire(import.meta.url);
  return {
    ...(req('tslab/dist/converter') as Pick<Tslab, 'createConverter'>),
    ...(req('tslab/dist/executor') as Pick<Tslab, 'createExecutor'>),
    ...(req('tslab/dist/jupyter') as Pick<Tslab, 'ZmqServer' | 'JupyterHandlerImpl'>),
  };
}

/**
 * The code run before the first cell. tslab type-checks every cell against the declarations of the
 * cells before it, so `llm` must be declared in a cell, not just put on globalThis: the prelude
 * declares it with the library's own types (from the compiled .d.ts) and the value the launcher loaded.
 */
export function prelude(indexJs: string): string {
  const mod = JSON.stringify(indexJs);
  return [
    `const llmbox: typeof import(${mod}) = (globalThis as any).__llmbox;`,
    'const llm = llmbox.llm;',
  ].join('\n');
}

/**
 * Starts the llmbox kernel: tslab's TypeScript kernel with llmbox loaded, `llm` and `llmbox` in
 * scope, and a cell's last value shown through llmbox's display hooks (HTML tables, charts).
 */
export async function startKernel(configPath: string): Promise<void> {
  // Watched from the start: a client that dies while the kernel loads must not leave it running.
  exitWithParent();
  const indexJs = fileURLToPath(new URL('../index.js', import.meta.url));
  (globalThis as Record<string, unknown>).__llmbox = await import(indexJs);
  const tslab = loadTslab();
  const node = tslab.createConverter({ isJS: false, isBrowser: false });
  let browser: Converter | undefined;
  const convs = {
    node,
    get browser() {
      return (browser ??= tslab.createConverter({ isJS: false, isBrowser: true }));
    },
    close() {
      node.close();
      browser?.close();
    },
  };
  const executor = tslab.createExecutor(process.cwd(), convs, {
    // tslab prints a cell's last value with console.log; rich values become display data instead.
    log: (...args: unknown[]) => {
      if (args.length === 1 && isDisplayable(args[0]) && show(args[0])) return;
      console.log(...args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 4, colors: false }))));
    },
    error: (...args: unknown[]) => console.error(...args),
  });
  if (!(await executor.execute(prelude(indexJs)))) throw new Error('llmbox kernel: the prelude failed to compile (is dist/ built?)');
  const server = new tslab.ZmqServer(new tslab.JupyterHandlerImpl(executor, false), configPath);
  process.on('SIGINT', () => executor.interrupt());
  process.on('uncaughtException', (err) => console.error('UncaughtException:', err));
  process.on('unhandledRejection', (reason) => console.error('UnhandledPromiseRejection:', reason));
  server.init();
}

/**
 * Exits when the process that started the kernel is gone, as ipykernel's parent poller does (Jupyter
 * names it in JPY_PARENT_PID): a kernel whose client was killed would otherwise run on, at full CPU
 * if a cell was busy.
 */
export function exitWithParent(parent = Number(process.env.JPY_PARENT_PID) || process.ppid, intervalMs = 1000): NodeJS.Timeout {
  const started = process.ppid;
  const timer = setInterval(() => {
    // Re-parented (to init or a subreaper): the launching process has died.
    if (!processAlive(parent) || process.ppid !== started) process.exit(0);
  }, intervalMs);
  timer.unref();
  return timer;
}
