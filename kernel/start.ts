import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { processAlive } from '../lib/util/process.js';
import { CellQueue } from './cells.js';
import { cellDisplay, isDisplayable, setCellWriter, type WriteDisplayData } from './display.js';

/** The parts of tslab (1.0.x, CommonJS) the kernel is assembled from. */
interface Converter {
  close(): void;
}
interface Executor {
  execute(src: string): Promise<boolean>;
  interrupt(): void;
}
interface ZmqMessage {
  header: { msg_type: string };
  content: unknown;
  createReply(): ZmqMessage;
  signAndSend(key: string, socket: unknown): void;
}
interface ZmqServer {
  readonly iopub: unknown;
  readonly connInfo: { key: string };
  readonly handler: { close(): void };
  init(): Promise<void>;
  handleExecute(socket: unknown, msg: ZmqMessage): Promise<void>;
  close(): void;
}
interface Tslab {
  createConverter(opts: { isJS: boolean; isBrowser: boolean }): Converter;
  createExecutor(
    root: string,
    convs: { node: Converter; browser: Converter; close(): void },
    console: { log(...a: unknown[]): void; error(...a: unknown[]): void },
  ): Executor;
  ZmqServer: new (handler: unknown, configPath: string) => ZmqServer;
  JupyterHandlerImpl: new (executor: Executor, isJS: boolean) => unknown;
  /** Read by tslab's own display API (`import * as tslab from 'tslab'` in a cell). */
  jupyter: { lastWriteDisplayData: WriteDisplayData | null };
}

function loadTslab(): Tslab {
  const req = createRequire(import.meta.url);
  return {
    ...(req('tslab/dist/converter') as Pick<Tslab, 'createConverter'>),
    ...(req('tslab/dist/executor') as Pick<Tslab, 'createExecutor'>),
    ...(req('tslab/dist/jupyter') as Pick<Tslab, 'ZmqServer' | 'JupyterHandlerImpl'>),
    jupyter: req('tslab/dist/jupyter') as Tslab['jupyter'],
  };
}

/**
 * The code run before the first cell. tslab type-checks every cell against the declarations of the
 * cells before it, so `llm` must be declared in a cell, not just put on globalThis: the prelude
 * declares it with the library's own types (from the compiled .d.ts) and the value the launcher loaded.
 */
export function prelude(indexJs: string): string {
  const mod = JSON.stringify(indexJs);
  return [`const llmbox: typeof import(${mod}) = (globalThis as any).__llmbox;`, 'const llm = llmbox.llm;'].join('\n');
}

/**
 * Starts the llmbox kernel: tslab's TypeScript kernel with llmbox loaded, `llm` and `llmbox` in
 * scope, and a cell's last value shown through llmbox's display hooks (HTML tables, charts).
 */
export async function startKernel(configPath: string): Promise<void> {
  // Watched from the start: a client that dies while the kernel loads must not leave it running.
  exitWithParent();
  const indexJs = fileURLToPath(new URL('../lib/index.js', import.meta.url));
  const llmbox = (await import(indexJs)) as typeof import('../lib/index.js');
  // The library knows no kernel: it draws through the host plugged in here.
  llmbox.setDisplayHost(cellDisplay);
  (globalThis as Record<string, unknown>).__llmbox = llmbox;
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
      if (args.length === 1 && isDisplayable(args[0])) return cellDisplay.show(args[0]);
      console.log(...args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 4, colors: false }))));
    },
    // A failing cell's error (a thrown value or type errors) becomes its error output.
    error: (...args: unknown[]) => cells.report(...args),
  });
  const cells = new CellQueue(executor);
  if (!(await executor.execute(prelude(indexJs))))
    throw new Error('llmbox kernel: the prelude failed to compile (is dist/ built?)');
  const server = kernelServer(tslab, cells, new tslab.JupyterHandlerImpl(executor, false), configPath);
  process.on('SIGINT', () => executor.interrupt());
  process.on('uncaughtException', (err) => console.error('UncaughtException:', err));
  process.on('unhandledRejection', (reason) => console.error('UnhandledPromiseRejection:', reason));
  await server.init();
}

/**
 * tslab's ZeroMQ server with llmbox's execute path (errors as error outputs, aborts only for the
 * requests queued behind a failure) and a shutdown that ends the process once the reply is sent,
 * as ipykernel does: closing the sockets under a still-running cell or heartbeat made the next send
 * throw "Socket is closed".
 */
function kernelServer(tslab: Tslab, cells: CellQueue, handler: unknown, configPath: string): ZmqServer {
  const decoder = new TextDecoder();
  class LlmboxServer extends tslab.ZmqServer {
    override async handleExecute(socket: unknown, msg: ZmqMessage): Promise<void> {
      const publish = (type: string, content: unknown) => {
        const m = msg.createReply();
        m.header.msg_type = type;
        m.content = content;
        m.signAndSend(this.connInfo.key, this.iopub);
      };
      const stream = (name: 'stdout' | 'stderr') =>
        ((chunk: string | Uint8Array) => {
          publish('stream', { name, text: typeof chunk === 'string' ? chunk : decoder.decode(chunk) });
          return true;
        }) as typeof process.stdout.write;
      const write: WriteDisplayData = (data, update) => publish(update ? 'update_display_data' : 'display_data', data);
      const req = msg.content as { code: string; stop_on_error?: boolean };
      const content = await cells.run(req.code, {
        stopOnError: req.stop_on_error,
        // As ipykernel: output written later (a timer, an un-awaited promise) goes to the last cell run.
        onStart: (n) => {
          // Clients number the cell from this message (nbclient, JupyterLab).
          publish('execute_input', { code: req.code, execution_count: n });
          process.stdout.write = stream('stdout');
          process.stderr.write = stream('stderr');
          setCellWriter(write);
          tslab.jupyter.lastWriteDisplayData = write;
        },
        onError: (e) => publish('error', e),
      });
      const reply = msg.createReply();
      reply.header.msg_type = 'execute_reply';
      reply.content = content;
      reply.signAndSend(this.connInfo.key, socket);
    }

    override close(): void {
      this.handler.close();
      // The shutdown reply and the idle status are queued on the sockets; give them a moment to leave.
      setTimeout(() => process.exit(0), 200);
    }
  }
  return new LlmboxServer(handler, configPath);
}

/**
 * Exits when the process that started the kernel is gone, as ipykernel's parent poller does (Jupyter
 * names it in JPY_PARENT_PID): a kernel whose client was killed would otherwise run on, at full CPU
 * if a cell was busy.
 */
export function exitWithParent(
  parent = Number(process.env.JPY_PARENT_PID) || process.ppid,
  intervalMs = 1000,
): NodeJS.Timeout {
  const started = process.ppid;
  const timer = setInterval(() => {
    // Re-parented (to init or a subreaper): the launching process has died.
    if (!processAlive(parent) || process.ppid !== started) process.exit(0);
  }, intervalMs);
  timer.unref();
  return timer;
}
