import type { Table } from 'apache-arrow';
import { itemsTable, type ColumnKind } from './frames.js';
import type { TrainResult } from '../train/trainer.js';
import { median } from '../eval/metrics/stats.js';
import { Figure, type PlotlyObject } from './figure.js';

/** A named training run, as the comparisons below read it. */
export interface NamedRun {
  name: string;
  result: TrainResult;
}

const MIB = 1024 * 1024;
// plotly's default colours, so a run's train and eval curves share one.
const COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

/** How a run trained: every weight, LoRA adapters, or adapters over an NF4 base (QLoRA). */
export function trainingMethod(r: TrainResult): 'full' | 'lora' | 'qlora' {
  return r.quantization ? 'qlora' : r.memory.adapters > 0 ? 'lora' : 'full';
}

/**
 * One row per run: what it trained, the model state it held (weights as held, adapters, gradients and
 * AdamW moments; activations are not counted), its median step time and throughput, and its losses.
 */
export function trainingRunsTable(runs: NamedRun[]): Table {
  const state = (r: TrainResult) => r.memory.weights + r.memory.adapters + r.memory.gradients + r.memory.optimizer;
  const float = (f: (r: TrainResult) => number): [ColumnKind, (x: NamedRun) => number] => ['float', (x) => f(x.result)];
  return itemsTable(runs, {
    run: ['text', (x) => x.name],
    method: ['text', (x) => trainingMethod(x.result)],
    steps: ['int', (x) => x.result.steps],
    trainable: ['count', (x) => x.result.parameters.trainable],
    trainable_pct: float((r) => (100 * r.parameters.trainable) / r.parameters.total),
    weights_mib: float((r) => r.memory.weights / MIB),
    state_mib: float((r) => state(r) / MIB),
    step_s: float((r) => median(r.metrics.map((m) => m.seconds))),
    tokens_per_s: float((r) => median(r.metrics.map((m) => m.tokensPerSecond))),
    first_loss: float((r) => r.losses[0] ?? NaN),
    last_loss: float((r) => r.losses.at(-1) ?? NaN),
    eval_loss: float((r) => r.evalLoss ?? NaN),
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
