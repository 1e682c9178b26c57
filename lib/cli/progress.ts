import type { Progress } from '../eval/evaluate.js';
import type { StepMetrics } from '../train/trainer.js';
import type { PullProgress } from '../hub/pull.js';

/** A status line on stderr: redrawn in place on a terminal; elsewhere a line every 10 s and the last one. */
function statusLine(): { update(line: () => string, final: boolean): void; tty: boolean } {
  const tty = !!process.stderr.isTTY;
  let last = 0;
  return {
    tty,
    update(line, final) {
      const now = Date.now();
      if (!tty && !final && now - last < 10_000) return;
      last = now;
      process.stderr.write(tty ? `\r\x1b[K${line()}${final ? '\n' : ''}` : `${line()}\n`);
    },
  };
}

/** Step, loss, learning rate and tokens/s as a progress bar on stderr; evaluation losses as lines. */
export function trainProgress(): {
  step: (m: StepMetrics, total: number) => void;
  eval: (e: { step: number; loss: number }) => void;
} {
  const status = statusLine();
  return {
    step: (m, total) =>
      status.update(() => {
        const width = 24,
          filled = Math.round((width * m.step) / total);
        return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] step ${m.step}/${total} loss ${m.loss.toFixed(4)} lr ${m.lr.toExponential(2)} |g| ${m.gradNorm.toFixed(2)} ${Math.round(m.tokensPerSecond)} tok/s`;
      }, m.step === total),
    eval: (e) =>
      process.stderr.write(`${status.tty ? '\r\x1b[K' : ''}eval loss at step ${e.step}: ${e.loss.toFixed(4)}\n`),
  };
}

/** Instances/s and ETA on stderr. */
export function progressPrinter(): (p: Progress) => void {
  const status = statusLine();
  return (p) =>
    status.update(() => {
      const eta = Number.isFinite(p.etaSeconds)
        ? `${Math.floor(p.etaSeconds / 60)}m${String(Math.round(p.etaSeconds % 60)).padStart(2, '0')}s`
        : '?';
      return `${p.task}: ${p.done}/${p.total} instances, ${p.rate.toFixed(1)}/s, ETA ${eta}`;
    }, p.done === p.total);
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** A hub download as a progress bar on stderr: files, bytes and the file being fetched. */
export function pullProgress(repo: string): (p: PullProgress) => void {
  const status = statusLine();
  return (p) =>
    status.update(() => {
      const width = 24,
        filled = p.bytesTotal ? Math.round((width * p.bytesDone) / p.bytesTotal) : width;
      return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${repo}: ${p.filesDone}/${p.filesTotal} files, ${mib(p.bytesDone)} of ${mib(p.bytesTotal)}${p.filesDone < p.filesTotal ? ` (${p.file})` : ''}`;
    }, p.filesDone === p.filesTotal);
}
