import type { EvalRun } from '../eval/evaluate.js';
import { softmax } from '../eval/metrics/index.js';
import { argmax } from '../models/sampling.js';
import { Figure, type PlotlyObject } from './figure.js';

/**
 * Scores per task (bars with one standard error) for one metric per task: the given one where a task
 * reports it, else the task's first metric. Several runs (models) become grouped bars.
 */
export function scoresFigure(runs: { name: string; run: EvalRun }[], metric?: string): Figure {
  const data: PlotlyObject[] = runs.map(({ name, run }) => {
    const rows = [
      ...run.results.map((r) => ({ label: r.task, metrics: r.metrics })),
      ...run.groups.map((g) => ({ label: `${g.group} (all)`, metrics: g.metrics })),
    ].filter((r) => Object.keys(r.metrics).length > 0);
    const pick = (m: Record<string, { value: number; stderr: number }>) =>
      m[metric ?? ''] ?? m.acc ?? Object.values(m)[0];
    const chosen = rows.map((r) => pick(r.metrics));
    return {
      type: 'bar',
      name,
      x: rows.map((r) => r.label),
      y: chosen.map((v) => v.value),
      error_y: { type: 'data', array: chosen.map((v) => (Number.isFinite(v.stderr) ? v.stderr : 0)), visible: true },
      hovertemplate: '%{x}: %{y:.4f}<extra>' + name + '</extra>',
    };
  });
  return new Figure(data, {
    title: { text: metric ? `${metric} by task` : 'scores by task' },
    barmode: 'group',
    yaxis: { title: { text: metric ?? 'score' }, rangemode: 'tozero' },
    xaxis: { automargin: true },
    margin: { t: 48 },
  });
}

/**
 * Calibration of multiple-choice answers: the probability the model gives its chosen option
 * (softmax over the options' log-likelihoods), in bins, against how often that choice is right.
 */
export function calibrationFigure(run: EvalRun, bins = 10): Figure {
  const conf: number[] = [],
    right: number[] = [];
  for (const r of run.results) {
    for (const s of r.samples) {
      if (r.method === 'gen' || r.method === 'rolling') continue;
      const n = s.doc.choices?.length ?? 0;
      const lls = (s.filtered_resps as [number, boolean][]).slice(0, n).map(([ll]) => ll);
      if (lls.length < 2) continue;
      const pick = argmax(lls);
      conf.push(softmax(lls)[pick]);
      right.push(pick === Number(s.target) ? 1 : 0);
    }
  }
  const centers: number[] = [],
    accuracy: number[] = [],
    counts: number[] = [];
  for (let b = 0; b < bins; b++) {
    const lo = b / bins,
      hi = (b + 1) / bins;
    const idx = conf.map((c, i) => (c >= lo && (c < hi || (b === bins - 1 && c <= hi)) ? i : -1)).filter((i) => i >= 0);
    if (!idx.length) continue;
    centers.push((lo + hi) / 2);
    accuracy.push(idx.reduce((a, i) => a + right[i], 0) / idx.length);
    counts.push(idx.length);
  }
  return new Figure(
    [
      {
        type: 'bar',
        name: 'accuracy',
        x: centers,
        y: accuracy,
        width: 0.9 / bins,
        customdata: counts,
        hovertemplate: 'confidence %{x:.2f}: accuracy %{y:.3f} (n=%{customdata})<extra></extra>',
      },
      { type: 'scatter', mode: 'lines', name: 'perfect calibration', x: [0, 1], y: [0, 1], line: { dash: 'dot' } },
    ],
    {
      title: { text: 'calibration of multiple-choice answers' },
      xaxis: { title: { text: 'probability of the chosen option' }, range: [0, 1] },
      yaxis: { title: { text: 'accuracy' }, range: [0, 1] },
    },
  );
}

/** A curve over training steps: drawn as lines, or lines with markers (sparse points such as evaluations). */
interface StepSeries {
  name: string;
  x: number[];
  y: number[];
  markers?: boolean;
}

/**
 * Step curves on a left axis and one dotted curve on a right axis: the shape of every training chart
 * (loss and learning rate, reward margin and accuracy, reward and KL).
 */
function stepFigure(o: {
  title: string;
  left: StepSeries[];
  right: StepSeries;
  leftTitle: string;
  rightTitle: string;
  /** More settings of the right axis (its number format, its range). */
  rightAxis?: PlotlyObject;
  layout?: PlotlyObject;
}): Figure {
  const trace = (s: StepSeries): PlotlyObject => ({
    type: 'scatter',
    mode: s.markers ? 'lines+markers' : 'lines',
    name: s.name,
    x: s.x,
    y: s.y,
  });
  const data = [...o.left.map(trace), { ...trace(o.right), yaxis: 'y2', line: { dash: 'dot', width: 1 } }];
  return new Figure(data, {
    title: { text: o.title },
    xaxis: { title: { text: 'step' } },
    yaxis: { title: { text: o.leftTitle } },
    yaxis2: { title: { text: o.rightTitle }, overlaying: 'y', side: 'right', showgrid: false, ...o.rightAxis },
    legend: { orientation: 'h', y: -0.2 },
    ...o.layout,
  });
}

/** The evaluation points beside a curve, where there are any. */
const sparse = <P extends { step: number }>(name: string, points: P[], value: (p: P) => number): StepSeries[] =>
  points.length ? [{ name, x: points.map((p) => p.step), y: points.map(value), markers: true }] : [];

/** Training curves: loss per step and evaluation loss (left axis), learning rate (right axis). */
export function lossFigure(
  steps: { step: number; loss: number; lr: number }[],
  evalLosses: { step: number; loss: number }[] = [],
  title = 'training',
): Figure {
  const x = steps.map((s) => s.step);
  return stepFigure({
    title,
    left: [{ name: 'train loss', x, y: steps.map((s) => s.loss) }, ...sparse('eval loss', evalLosses, (e) => e.loss)],
    right: { name: 'learning rate', x, y: steps.map((s) => s.lr) },
    leftTitle: 'loss (nats/token)',
    rightTitle: 'learning rate',
    rightAxis: { exponentformat: 'e' },
    layout: { margin: { t: 48 } },
  });
}

/** A data mixture: each source's share as asked (the ratios) and as realised. */
export function mixtureFigure(sources: { name: string; proportion: number }[], ratios?: number[]): Figure {
  const names = sources.map((s) => s.name.split('/').pop()!);
  const data: PlotlyObject[] = [
    {
      type: 'bar',
      name: 'realised',
      x: names,
      y: sources.map((s) => s.proportion),
      hovertemplate: '%{x}: %{y:.3f}<extra>realised</extra>',
    },
  ];
  if (ratios) {
    const total = ratios.reduce((a, b) => a + b, 0);
    data.unshift({
      type: 'bar',
      name: 'asked',
      x: names,
      y: ratios.map((r) => r / total),
      hovertemplate: '%{x}: %{y:.3f}<extra>asked</extra>',
    });
  }
  return new Figure(data, {
    title: { text: 'data mixture' },
    barmode: 'group',
    yaxis: { title: { text: 'share of examples' }, range: [0, 1] },
    margin: { t: 48 },
  });
}

/** A preference run: the reward margin and accuracy per step, and the held-out margin where measured. */
export function preferenceFigure(
  steps: { step: number; margin: number; accuracy: number }[],
  evals: { step: number; margin: number }[] = [],
  title = 'preference optimisation',
): Figure {
  const x = steps.map((s) => s.step);
  return stepFigure({
    title,
    left: [
      { name: 'reward margin', x, y: steps.map((s) => s.margin) },
      ...sparse('held-out margin', evals, (e) => e.margin),
    ],
    right: { name: 'reward accuracy', x, y: steps.map((s) => s.accuracy) },
    leftTitle: 'chosen - rejected reward',
    rightTitle: 'accuracy',
    rightAxis: { range: [0, 1] },
  });
}

/** A PPO run: the mean reward per step, and the KL to the reference on a second axis. */
export function ppoFigure(steps: { step: number; reward: number; kl: number }[], title = 'PPO'): Figure {
  const x = steps.map((s) => s.step);
  return stepFigure({
    title,
    left: [{ name: 'mean reward', x, y: steps.map((s) => s.reward) }],
    right: { name: 'KL to the reference', x, y: steps.map((s) => s.kl) },
    leftTitle: 'reward',
    rightTitle: 'KL (nats)',
  });
}
