import { Float64, Int32, Table, Utf8, vectorFromArray } from 'apache-arrow';
import type { TrainResult } from '../train/trainer.js';
import { Figure, type PlotlyObject } from './figure.js';

/** A named training run, as the comparisons below read it. */
export interface NamedRun {
  name: string;
  result: TrainResult;
}

const MIB = 1024 * 1024;
// plotly's default colours, so a run's train and eval curves share one.
const COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

const median = (xs: number[]): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Integer counts as an Int32 column where they fit (shown without decimals), else float64 (7B full fine-tuning does not fit). */
const counts = (xs: number[]) => vectorFromArray(xs, xs.every((x) => x < 2 ** 31) ? new Int32() : new Float64());

/** How a run trained: every weight, LoRA adapters, or adapters over an NF4 base (QLoRA). */
export function trainingMethod(r: TrainResult): 'full' | 'lora' | 'qlora' {
  return r.quantization ? 'qlora' : r.memory.adapters > 0 ? 'lora' : 'full';
}

/**
 * One row per run: what it trained, the model state it held (weights as held, adapters, gradients and
 * AdamW moments; activations are not counted), its median step time and throughput, and its losses.
 */
export function trainingRunsTable(runs: NamedRun[]): Table {
  const col = (f: (r: TrainResult) => number) =>
    vectorFromArray(
      runs.map((x) => f(x.result)),
      new Float64(),
    );
  const state = (r: TrainResult) => r.memory.weights + r.memory.adapters + r.memory.gradients + r.memory.optimizer;
  return new Table({
    run: vectorFromArray(
      runs.map((x) => x.name),
      new Utf8(),
    ),
    method: vectorFromArray(
      runs.map((x) => trainingMethod(x.result)),
      new Utf8(),
    ),
    steps: vectorFromArray(
      runs.map((x) => x.result.steps),
      new Int32(),
    ),
    trainable: counts(runs.map((x) => x.result.parameters.trainable)),
    trainable_pct: col((r) => (100 * r.parameters.trainable) / r.parameters.total),
    weights_mib: col((r) => r.memory.weights / MIB),
    state_mib: col((r) => state(r) / MIB),
    step_s: col((r) => median(r.metrics.map((m) => m.seconds))),
    tokens_per_s: col((r) => median(r.metrics.map((m) => m.tokensPerSecond))),
    first_loss: col((r) => r.losses[0] ?? NaN),
    last_loss: col((r) => r.losses.at(-1) ?? NaN),
    eval_loss: col((r) => r.evalLoss ?? NaN),
  });
}

/** Where each step ends on the chosen axis: its number, the tokens seen so far, or the seconds spent so far. */
function axis(r: TrainResult, x: 'step' | 'tokens' | 'seconds'): number[] {
  if (x === 'step') return r.metrics.map((m) => m.step);
  let sum = 0;
  return r.metrics.map((m) => (sum += x === 'tokens' ? m.tokens : m.seconds));
}

/** The runs' training losses (lines) and evaluation losses (markers), one colour per run, against steps, tokens or seconds. */
export function trainingRunsFigure(runs: NamedRun[], x: 'step' | 'tokens' | 'seconds' = 'step'): Figure {
  const data: PlotlyObject[] = runs.flatMap(({ name, result }, i) => {
    const xs = axis(result, x);
    const at = (step: number) => (step === 0 ? 0 : xs[step - 1]);
    const colour = COLOURS[i % COLOURS.length];
    const curves: PlotlyObject[] = [
      { type: 'scatter', mode: 'lines', name, legendgroup: name, x: xs, y: result.losses, line: { color: colour } },
    ];
    if (result.evalLosses.length)
      curves.push({
        type: 'scatter',
        mode: 'markers',
        name: `${name} (eval)`,
        legendgroup: name,
        x: result.evalLosses.map((e) => at(e.step)),
        y: result.evalLosses.map((e) => e.loss),
        marker: { color: colour, size: 8, symbol: 'diamond' },
      });
    return curves;
  });
  const titles = { step: 'step', tokens: 'tokens seen', seconds: 'seconds' };
  return new Figure(data, {
    title: { text: 'training runs' },
    xaxis: { title: { text: titles[x] } },
    yaxis: { title: { text: 'loss (nats/token)' } },
    legend: { orientation: 'h', y: -0.2 },
  });
}
