import { format } from 'node:util';

/** A failed cell as Jupyter shows it: an `error` output, and the same fields in the execute reply. */
export interface CellError {
  ename: string;
  evalue: string;
  traceback: string[];
}

export type CellReply =
  | { status: 'ok'; execution_count: number }
  | ({ status: 'error'; execution_count: number } & CellError)
  | { status: 'aborted' };

interface Executor {
  execute(src: string): Promise<boolean>;
}

/**
 * What tslab's executor reports through `console.error` when a cell fails (a thrown value, or
 * TypeScript diagnostics as a format string), as an error output. Frames only with LLMBOX_DEBUG=1,
 * as the CLI does: a notebook user needs the message, not llmbox's internals.
 */
export function cellError(reports: unknown[][]): CellError {
  const thrown = reports.find((args) => args.length === 1 && typeof args[0] === 'object' && args[0] !== null)?.[0];
  if (thrown instanceof Error || (thrown && typeof (thrown as Error).message === 'string')) {
    const e = thrown as Error;
    const ename = e.name || 'Error';
    const frames = process.env.LLMBOX_DEBUG === '1' ? (e.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l)) : [];
    return { ename, evalue: e.message, traceback: [`${ename}: ${e.message}`, ...frames] };
  }
  if (reports.length === 1 && reports[0].length === 1 && typeof reports[0][0] !== 'string') {
    const evalue = String(reports[0][0]);
    return { ename: 'Error', evalue, traceback: [`Error: ${evalue}`] };
  }
  const lines = reports.map((args) => format(...args));
  if (!lines.length) return { ename: 'Error', evalue: 'the cell failed', traceback: ['Error: the cell failed'] };
  // Several lines are TypeScript diagnostics (one per problem); a single string is a message.
  const ename = lines.some((l) => /^(\S+ )?\d+:\d+ - /.test(l)) ? 'TypeScriptError' : 'Error';
  return { ename, evalue: lines.join('\n'), traceback: lines.map((l, i) => (i === 0 ? `${ename}: ${l}` : l)) };
}

/**
 * Runs cells one at a time in arrival order, numbering them as Jupyter does. When a cell fails and
 * its request asked to stop on error (the default), the requests already waiting behind it are
 * aborted, and only those: a client that sends the next cell after reading the error reply (nbclient
 * with --allow-errors, a person re-running a cell) gets it run. tslab instead dropped every request
 * for 200 ms after an error, so such cells came back aborted and empty.
 */
export class CellQueue {
  private count = 0;
  private epoch = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private reports: unknown[][] = [];

  constructor(private readonly executor: Executor) {}

  /** The executor's console.error: what it reports is kept for the running cell's error output. */
  readonly report = (...args: unknown[]): void => {
    this.reports.push(args);
  };

  run(
    code: string,
    opts: { stopOnError?: boolean; onStart?: (executionCount: number) => void; onError?: (e: CellError) => void } = {},
  ): Promise<CellReply> {
    const epoch = this.epoch;
    const next = this.tail.then(async (): Promise<CellReply> => {
      if (epoch !== this.epoch) return { status: 'aborted' };
      const n = ++this.count;
      this.reports = [];
      opts.onStart?.(n);
      if (await this.executor.execute(code)) return { status: 'ok', execution_count: n };
      const error = cellError(this.reports);
      if (opts.stopOnError !== false) this.epoch++;
      opts.onError?.(error);
      return { status: 'error', execution_count: n, ...error };
    });
    this.tail = next.catch(() => undefined);
    return next;
  }
}
