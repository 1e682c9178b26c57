// Live notebook displays (progress bars, growing charts, streamed text) the chain draws while it works.
import { type Progress } from '../eval/evaluate.js';
import { lossFigure, ppoFigure, preferenceFigure } from '../report/charts.js';
import type { PpoStep } from '../train/ppo.js';
import { type StepMetrics, type TrainResult } from '../train/trainer.js';
import { displayHost, progressHTML } from '../report/display.js';
import { escapeHtml } from '../report/html-table.js';

/** In a notebook, a progress bar redrawn in place (at most 5 times a second); elsewhere nothing. */
export function kernelProgress(): ((p: Progress) => void) | undefined {
  const host = displayHost();
  if (!host) return undefined;
  const bar = host.live();
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (p.done < p.total && now - last < 200) return;
    last = now;
    const eta = p.done < p.total && Number.isFinite(p.etaSeconds) ? `, ETA ${Math.round(p.etaSeconds)} s` : '';
    bar.update(progressHTML(p.task, p.done, p.total, `${p.rate.toFixed(1)} instances/s${eta}`));
  };
}

/** In a notebook, text redrawn in place as it grows (at most 10 times a second); elsewhere nothing. */
export function kernelText(): { add: (delta: string) => void; flush: () => void } | undefined {
  const host = displayHost();
  if (!host) return undefined;
  const out = host.live();
  let text = '',
    last = 0;
  const flush = () => {
    last = Date.now();
    out.update(`<pre style="white-space:pre-wrap">${escapeHtml(text)}</pre>`);
  };
  return {
    add: (delta) => {
      text += delta;
      if (Date.now() - last >= 100) flush();
    },
    flush,
  };
}

/** In a notebook: a progress line and a loss chart, redrawn in place (the chart at most every 2 s). */
export function kernelTraining() {
  const host = displayHost();
  if (!host) return undefined;
  const bar = host.live(),
    chart = host.live();
  const steps: StepMetrics[] = [],
    evals: { step: number; loss: number }[] = [];
  let drawn = 0;
  const draw = () => {
    chart.update(lossFigure(steps, evals, 'training (live)'));
    drawn = Date.now();
  };
  return {
    step: (m: StepMetrics, total: number) => {
      steps.push(m);
      bar.update(
        progressHTML('train', m.step, total, `loss ${m.loss.toFixed(4)}, ${Math.round(m.tokensPerSecond)} tokens/s`),
      );
      if (Date.now() - drawn > 2000) draw();
    },
    eval: (e: { step: number; loss: number }) => evals.push(e),
    done: (r: TrainResult) => {
      evals.splice(0, evals.length, ...r.evalLosses);
      draw();
    },
  };
}

/** A PPO run's live progress bar and reward/KL chart. */
export function kernelPpo(): ((m: PpoStep, total: number) => void) | undefined {
  const host = displayHost();
  if (!host) return undefined;
  const bar = host.live(),
    chart = host.live();
  const seen: PpoStep[] = [];
  return (m, total) => {
    seen.push(m);
    bar.update(progressHTML('ppo', m.step, total, `reward ${m.reward.toFixed(3)}, KL ${m.kl.toFixed(3)}`));
    chart.update(ppoFigure(seen, 'PPO (live)'));
  };
}

/** A live progress bar and margin/accuracy chart for pairwise training (DPO, a reward model). */
export function kernelPreference(label: string, title: string) {
  const host = displayHost();
  if (!host) return undefined;
  const bar = host.live(),
    chart = host.live();
  const steps: { step: number; loss: number; margin: number; accuracy: number }[] = [];
  let drawn = 0;
  const draw = (evals: { step: number; margin: number }[] = []) => {
    chart.update(preferenceFigure(steps, evals, title));
    drawn = Date.now();
  };
  return {
    step: (m: (typeof steps)[number], total: number) => {
      steps.push(m);
      bar.update(
        progressHTML(
          label,
          m.step,
          total,
          `loss ${m.loss.toFixed(4)}, margin ${m.margin.toFixed(3)}, accuracy ${m.accuracy.toFixed(2)}`,
        ),
      );
      if (Date.now() - drawn > 2000) draw();
    },
    done: (r: { evals: { step: number; margin: number }[] }) => draw(r.evals),
  };
}
