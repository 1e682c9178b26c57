// What the fluent chain's steps return: Arrow tables, charts and HTML/text views for notebooks.
import { Table, Utf8, vectorFromArray } from 'apache-arrow';
import type { Span } from '../data/tokenize.js';
import { trainingRunsFigure, trainingRunsTable, type NamedRun } from '../report/training-runs.js';
import { LlmboxError } from '../errors.js';
import { type EvalRun } from '../eval/evaluate.js';
import type { ChatReply } from '../eval/lm.js';
import type { Message } from '../data/records.js';
import { type GenerateResult } from '../models/generate.js';
import {
  calibrationFigure,
  lossFigure,
  mixtureFigure,
  ppoFigure,
  preferenceFigure,
  scoresFigure,
} from '../report/charts.js';
import { type TrainResult } from '../train/trainer.js';
import { type RewardResult, type RewardStep } from '../train/reward.js';
import { type PpoResult, type PpoStep } from '../train/ppo.js';
import { type PreferenceResult, type PreferenceStep } from '../train/preference.js';
import { resultsTable } from '../report/eval-table.js';
import { runSummary, type RunSummary } from '../report/summary.js';
import { Figure } from '../report/figure.js';
import { itemsTable, rowsTable, toDanfo, toPolars, type ColumnKind } from '../report/frames.js';
import { escapeHtml, htmlTable, textTable } from '../report/html-table.js';

/** An evaluation's results: an Arrow table, charts, JSON, and HTML/text views for notebooks. */
export class Evaluation {
  readonly run: EvalRun;
  readonly table: Table;
  constructor(run: EvalRun) {
    this.run = run;
    this.table = resultsTable(run);
  }
  /** `scores` (bars with standard errors per task) or `calibration` (multiple-choice confidence vs accuracy). */
  plot(kind: 'scores' | 'calibration' = 'scores', metric?: string): Figure {
    return kind === 'calibration'
      ? calibrationFigure(this.run)
      : scoresFigure([{ name: this.run.fingerprint.model, run: this.run }], metric);
  }
  toDanfo(): ReturnType<typeof toDanfo> {
    return toDanfo(this.table);
  }
  toPolars(): unknown {
    return toPolars(this.table);
  }
  /** llmbox's stable JSON, the same as `llmbox eval --json` prints. */
  toJSON(): RunSummary {
    return runSummary(this.run);
  }
  toHTML(): string {
    return htmlTable(this.table);
  }
  toString(): string {
    return textTable(this.table);
  }
}

/** Evaluations of several models: a long table (model, task, subset, method, shots, metric, value, stderr, n) and grouped bars. */
export class Comparison {
  readonly evaluations: Record<string, Evaluation>;
  readonly table: Table;
  constructor(evaluations: Record<string, Evaluation>) {
    const names = Object.keys(evaluations);
    if (!names.length) throw new LlmboxError('compare needs at least one evaluation', { field: 'evaluations' });
    this.evaluations = evaluations;
    const parts = names.map((name) => {
      const t = evaluations[name].table;
      return t.assign(new Table({ model: vectorFromArray(new Array<string>(t.numRows).fill(name), new Utf8()) }));
    });
    const all = parts.slice(1).reduce((a, b) => a.concat(b), parts[0]);
    this.table = all.select(['model', ...all.schema.fields.map((f) => f.name).filter((n) => n !== 'model')]);
  }
  plot(metric?: string): Figure {
    return scoresFigure(
      Object.entries(this.evaluations).map(([name, e]) => ({ name, run: e.run })),
      metric,
    );
  }
  toDanfo(): ReturnType<typeof toDanfo> {
    return toDanfo(this.table);
  }
  toHTML(): string {
    return htmlTable(this.table);
  }
  toString(): string {
    return textTable(this.table);
  }
}

/** A training run: per-step metrics as an Arrow table, loss/learning-rate and mixture charts, the summary as JSON. */
export class Training {
  readonly result: TrainResult;
  readonly table: Table;
  readonly ratios: number[] | undefined;
  constructor(result: TrainResult, ratios?: number[]) {
    this.result = result;
    this.ratios = ratios;
    this.table = itemsTable(result.metrics, {
      step: ['int', (x) => x.step],
      loss: ['float', (x) => x.loss],
      lr: ['float', (x) => x.lr],
      grad_norm: ['float', (x) => x.gradNorm],
      tokens: ['int', (x) => x.tokens],
      tokens_per_second: ['float', (x) => x.tokensPerSecond],
    });
  }
  /** `loss` (train and eval loss with the learning rate) or `mixture` (asked vs realised shares). */
  plot(kind: 'loss' | 'mixture' = 'loss'): Figure {
    return kind === 'mixture'
      ? mixtureFigure(this.result.data.sources, this.ratios)
      : lossFigure(this.result.metrics, this.result.evalLosses, `${this.result.stage} training`);
  }
  toDanfo(): ReturnType<typeof toDanfo> {
    return toDanfo(this.table);
  }
  toJSON(): Record<string, unknown> {
    const { metrics: _metrics, ...rest } = this.result;
    return rest;
  }
  private summary(): string {
    const r = this.result;
    const ev = r.evalLosses.length ? `, eval loss ${r.evalLosses[0].loss.toFixed(4)} -> ${r.evalLoss!.toFixed(4)}` : '';
    return `${r.steps} steps (${r.stage}), loss ${r.losses[0]?.toFixed(4)} -> ${r.losses.at(-1)?.toFixed(4)}${ev}; ${r.parameters.trainable.toLocaleString('en-US')} of ${r.parameters.total.toLocaleString('en-US')} parameters trained`;
  }
  toHTML(): string {
    const last = this.table.numRows > 10 ? this.table.slice(this.table.numRows - 10) : this.table;
    return `<p>${escapeHtml(this.summary())}</p>\n${htmlTable(last)}`;
  }
  toString(): string {
    return this.summary();
  }
}

/** Training runs side by side: one row each (method, trainable share, model-state memory, speed, losses) and their loss curves. */
export class TrainingComparison {
  readonly runs: Record<string, Training>;
  readonly table: Table;
  constructor(runs: Record<string, Training>) {
    if (!Object.keys(runs).length) throw new LlmboxError('compare needs at least one training run', { field: 'runs' });
    this.runs = runs;
    this.table = trainingRunsTable(this.named());
  }
  private named(): NamedRun[] {
    return Object.entries(this.runs).map(([name, t]) => ({ name, result: t.result }));
  }
  /** Loss curves against steps, tokens seen (packing shows here) or wall-clock seconds (speed shows here). */
  plot(x: 'step' | 'tokens' | 'seconds' = 'step'): Figure {
    return trainingRunsFigure(this.named(), x);
  }
  toDanfo(): ReturnType<typeof toDanfo> {
    return toDanfo(this.table);
  }
  toHTML(): string {
    return htmlTable(this.table);
  }
  toString(): string {
    return textTable(this.table);
  }
}

/** A training example as the model reads it: the rendered text, and which of its tokens are learned (the loss mask). */
export class Formatted {
  readonly spans: Span[];
  readonly text: string;
  readonly tokens: number;
  readonly learned: number;
  readonly table: Table;
  constructor(spans: Span[]) {
    this.spans = spans;
    this.text = spans.map((s) => s.text).join('');
    this.tokens = spans.reduce((n, s) => n + s.tokens, 0);
    this.learned = spans.reduce((n, s) => n + (s.learned ? s.tokens : 0), 0);
    this.table = rowsTable(spans.map((s) => ({ text: s.text, learned: s.learned, tokens: s.tokens })));
  }
  private summary(): string {
    return `${this.learned} of ${this.tokens} tokens learned`;
  }
  toHTML(): string {
    const body = this.spans
      .map((s) => (s.learned ? `<span style="background:#c8f0c8">${escapeHtml(s.text)}</span>` : escapeHtml(s.text)))
      .join('');
    return `<p>${this.summary()} (<span style="background:#c8f0c8">highlighted</span>; the rest is context)</p>\n<pre class="llmbox-formatted" style="white-space:pre-wrap">${body}</pre>`;
  }
  toString(): string {
    return `${this.summary()}:\n${this.spans.map((s) => (s.learned ? `[[${s.text}]]` : s.text)).join('')}`;
  }
}

/** A run logged per step: its records as an Arrow table (step, then the named columns), shown in a notebook as a summary line over the last 10 rows. */
abstract class StepRun<S extends { step: number }> {
  readonly table: Table;
  protected constructor(metrics: S[], columns: Record<string, (x: S) => number>) {
    const floats = Object.entries(columns).map(([k, f]) => [k, ['float', f] as [ColumnKind, (x: S) => number]]);
    this.table = itemsTable(metrics, { step: ['int', (x) => x.step], ...Object.fromEntries(floats) });
  }
  abstract toString(): string;
  toHTML(): string {
    const last = this.table.numRows > 10 ? this.table.slice(this.table.numRows - 10) : this.table;
    return `<p>${escapeHtml(this.toString())}</p>\n${htmlTable(last)}`;
  }
}

/** "; held-out <what> accuracy a -> b, margin a -> b" from the first and last held-out evaluations. */
function heldOut(evals: { accuracy: number; margin: number }[], what: string): string {
  const [a, b] = [evals[0], evals.at(-1)];
  return a && b
    ? `; held-out ${what}accuracy ${a.accuracy.toFixed(3)} -> ${b.accuracy.toFixed(3)}, margin ${a.margin.toFixed(4)} -> ${b.margin.toFixed(4)}`
    : '';
}

/** A preference run (DPO and variants): per-step loss, rewards, margin and accuracy; held-out before and after. */
export class Alignment extends StepRun<PreferenceStep> {
  constructor(readonly result: PreferenceResult) {
    super(result.metrics, {
      loss: (x) => x.loss,
      chosen_reward: (x) => x.chosenReward,
      rejected_reward: (x) => x.rejectedReward,
      margin: (x) => x.margin,
      accuracy: (x) => x.accuracy,
      lr: (x) => x.lr,
      grad_norm: (x) => x.gradNorm,
    });
  }
  /** The reward margin and accuracy per step, with the held-out margin. */
  plot(): Figure {
    return preferenceFigure(
      this.result.metrics,
      this.result.evals,
      `${this.result.settings.loss} preference optimisation`,
    );
  }
  toJSON(): Record<string, unknown> {
    const { metrics: _metrics, ...rest } = this.result;
    return rest;
  }
  toString(): string {
    const r = this.result;
    return `${r.steps} steps (dpo, ${r.settings.loss}, beta ${r.settings.beta}, reference: ${r.reference})${heldOut(r.evals, '')}`;
  }
}

/** A PPO run: per-step reward, KL, entropy, clip fraction and losses. */
export class Reinforcement extends StepRun<PpoStep> {
  constructor(readonly result: PpoResult) {
    super(result.metrics, {
      reward: (x) => x.reward,
      kl: (x) => x.kl,
      kl_coef: (x) => x.klCoef,
      entropy: (x) => x.entropy,
      clip_fraction: (x) => x.clipFraction,
      policy_loss: (x) => x.policyLoss,
      value_loss: (x) => x.valueLoss,
    });
  }
  /** Mean reward and KL per step. */
  plot(): Figure {
    return ppoFigure(this.result.metrics);
  }
  toJSON(): Record<string, unknown> {
    return { ...this.result };
  }
  toString(): string {
    const m = this.result.metrics;
    return `${this.result.steps} PPO steps; reward ${m[0]?.reward.toFixed(3)} -> ${m.at(-1)?.reward.toFixed(3)}, KL ${m.at(-1)?.kl.toFixed(3)}`;
  }
}

/** A reward-model run: per-step loss, pair accuracy and margin, and the held-out pairs before and after. */
export class RewardTraining extends StepRun<RewardStep> {
  constructor(readonly result: RewardResult) {
    super(result.metrics, {
      loss: (x) => x.loss,
      margin: (x) => x.margin,
      accuracy: (x) => x.accuracy,
      lr: (x) => x.lr,
      grad_norm: (x) => x.gradNorm,
    });
  }
  /** The reward margin and pair accuracy per step, with the held-out margin. */
  plot(): Figure {
    return preferenceFigure(this.result.metrics, this.result.evals, 'reward model');
  }
  toJSON(): Record<string, unknown> {
    const { metrics: _metrics, ...rest } = this.result;
    return rest;
  }
  toString(): string {
    return `${this.result.steps} steps (reward model)${heldOut(this.result.evals, 'pair ')}`;
  }
}

/** Generated continuations, one per prompt. */
export class Generation {
  readonly prompts: string[];
  readonly results: GenerateResult[];
  readonly texts: string[];
  readonly table: Table;
  constructor(prompts: string[], results: GenerateResult[]) {
    this.prompts = prompts;
    this.results = results;
    this.texts = results.map((r) => r.text);
    this.table = itemsTable(
      results.map((r, i) => ({ prompt: prompts[i], r })),
      {
        prompt: ['text', (x) => x.prompt],
        text: ['text', (x) => x.r.text],
        tokens: ['int', (x) => x.r.ids.length],
        finish: ['text', (x) => x.r.finishReason],
      },
    );
  }
  toHTML(): string {
    return htmlTable(this.table);
  }
  toString(): string {
    return this.texts.join('\n---\n');
  }
}

/** A conversation with the model's reply as its last turn. */
export class Conversation {
  readonly messages: Message[];
  readonly reply: string;
  readonly finishReason: ChatReply['finishReason'];
  readonly table: Table;
  constructor(history: Message[], reply: ChatReply) {
    this.messages = [...history, { role: 'assistant', content: reply.text }];
    this.reply = reply.text;
    this.finishReason = reply.finishReason;
    this.table = itemsTable(this.messages, { role: ['text', (m) => m.role], content: ['text', (m) => m.content] });
  }
  toHTML(): string {
    return this.messages
      .map((m) => `<p><b>${escapeHtml(m.role)}</b>: ${escapeHtml(m.content).replace(/\n/g, '<br>')}</p>`)
      .join('\n');
  }
  toString(): string {
    return this.reply;
  }
}

/** The options of one question scored: log-likelihoods, probabilities over the options, the best option. */
export class Scores {
  readonly context: string;
  readonly options: { text: string; logprob: number; probability: number; tokens: number; isGreedy: boolean }[];
  readonly best: string;
  readonly table: Table;
  constructor(context: string, options: Scores['options']) {
    this.context = context;
    this.options = options;
    this.best = options.reduce((a, b) => (b.logprob > a.logprob ? b : a)).text;
    this.table = itemsTable(options, {
      option: ['text', (o) => o.text],
      logprob: ['float', (o) => o.logprob],
      probability: ['float', (o) => o.probability],
      tokens: ['int', (o) => o.tokens],
    });
  }
  toDanfo(): ReturnType<typeof toDanfo> {
    return toDanfo(this.table);
  }
  /** The probability of each option (softmax over the options' log-likelihoods). */
  plot(): Figure {
    return new Figure(
      [{ type: 'bar', x: this.options.map((o) => o.text), y: this.options.map((o) => o.probability) }],
      {
        title: { text: 'option probabilities' },
        yaxis: { title: { text: 'probability' }, range: [0, 1] },
      },
    );
  }
  toHTML(): string {
    return htmlTable(this.table);
  }
  toString(): string {
    return textTable(this.table);
  }
}
