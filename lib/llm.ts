import { Float64, Int32, Table, Utf8, vectorFromArray } from 'apache-arrow';
import { LlmboxError } from './errors.js';
import { resolve } from 'node:path';
import { defaultDataDir, evaluate, type EvalRun, type EvaluateOptions, type Progress } from './eval/evaluate.js';
import { LocalLM, type LocalLMOptions } from './eval/local.js';
import type { ChatReply, ChatTurnOptions, LanguageModel } from './eval/lm.js';
import type { Message } from './data/records.js';
import { isRemoteSpec, remoteModel, type RemoteModelOptions } from './eval/remote/index.js';
import { softmax } from './eval/metrics/index.js';
import { generate, type GenerateOptions, type GenerateResult } from './models/generate.js';
import { untrainedModel, type LoadedModel, type LoadModelOptions } from './models/load.js';
import {
  calibrationFigure,
  lossFigure,
  mixtureFigure,
  ppoFigure,
  preferenceFigure,
  scoresFigure,
} from './report/charts.js';
import { train, type StepMetrics, type TrainOptions, type TrainResult } from './train/trainer.js';
import { loadModelOrAdapter } from './train/adapted.js';
import { rewardsOf, trainReward, type RewardResult, type RewardStep, type RewardTrainOptions } from './train/reward.js';
import { trainPpo, type PpoOptions, type PpoResult, type PpoStep } from './train/ppo.js';
import {
  trainPreference,
  type PreferenceResult,
  type PreferenceStep,
  type PreferenceTrainOptions,
} from './train/preference.js';
import { resultsTable } from './report/eval-table.js';
import { runSummary, type RunSummary } from './report/summary.js';
import { Figure } from './report/figure.js';
import { displayHost, progressHTML, show } from './report/display.js';
import { toDanfo, toPolars } from './report/frames.js';
import { escapeHtml, htmlTable, textTable } from './report/html-table.js';

/** Local models: engine and batching options; remote ones (`openai:M`, `anthropic:M`, `URL::M`): endpoint, key variable, concurrency, cache. */
export type LoadOptions = LoadModelOptions &
  LocalLMOptions &
  RemoteModelOptions & { /** A PEFT LoRA adapter folder applied to a local model. */ adapter?: string };

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
    const m = result.metrics;
    this.table = new Table({
      step: vectorFromArray(
        m.map((x) => x.step),
        new Int32(),
      ),
      loss: vectorFromArray(
        m.map((x) => x.loss),
        new Float64(),
      ),
      lr: vectorFromArray(
        m.map((x) => x.lr),
        new Float64(),
      ),
      grad_norm: vectorFromArray(
        m.map((x) => x.gradNorm),
        new Float64(),
      ),
      tokens: vectorFromArray(
        m.map((x) => x.tokens),
        new Int32(),
      ),
      tokens_per_second: vectorFromArray(
        m.map((x) => x.tokensPerSecond),
        new Float64(),
      ),
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

/** A run logged per step: its records as an Arrow table (step, then the named columns), shown in a notebook as a summary line over the last 10 rows. */
abstract class StepRun<S extends { step: number }> {
  readonly table: Table;
  protected constructor(metrics: S[], columns: Record<string, (x: S) => number>) {
    const cols = Object.entries(columns).map(([k, f]) => [k, vectorFromArray(metrics.map(f), new Float64())]);
    this.table = new Table({
      step: vectorFromArray(
        metrics.map((x) => x.step),
        new Int32(),
      ),
      ...Object.fromEntries(cols),
    });
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

/** Options of a reward-model stage in the fluent chain: `train({ stage: 'rm', datasets, ... })`. */
export type RewardStageOptions = Omit<RewardTrainOptions, 'stage'> & { stage: 'rm' };

/** Options of a PPO stage in the fluent chain: `train({ stage: 'ppo', prompts, reward, steps, lora })`. */
export type PpoStageOptions = PpoOptions & { stage: 'ppo' };

/** Options of a preference stage in the fluent chain: `train({ stage: 'dpo', ... })`. */
export type AlignOptions = Omit<PreferenceTrainOptions, 'stage'> & { stage: 'dpo' };

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
    this.table = new Table({
      prompt: vectorFromArray(prompts, new Utf8()),
      text: vectorFromArray(this.texts, new Utf8()),
      tokens: vectorFromArray(
        results.map((r) => r.ids.length),
        new Int32(),
      ),
      finish: vectorFromArray(
        results.map((r) => r.finishReason),
        new Utf8(),
      ),
    });
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
    this.table = new Table({
      role: vectorFromArray(
        this.messages.map((m) => m.role),
        new Utf8(),
      ),
      content: vectorFromArray(
        this.messages.map((m) => m.content),
        new Utf8(),
      ),
    });
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
    this.table = new Table({
      option: vectorFromArray(
        options.map((o) => o.text),
        new Utf8(),
      ),
      logprob: vectorFromArray(
        options.map((o) => o.logprob),
        new Float64(),
      ),
      probability: vectorFromArray(
        options.map((o) => o.probability),
        new Float64(),
      ),
      tokens: vectorFromArray(
        options.map((o) => o.tokens),
        new Int32(),
      ),
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

interface Step {
  name: string;
  run(lm: LanguageModel): Promise<unknown>;
}

/**
 * A chain of steps on one model: each call queues a step and returns a new chain; awaiting runs the
 * steps in order (loading the model once) and gives the last step's result. A failure surfaces at
 * the await, naming the step.
 */
export class Chain<R> implements PromiseLike<R> {
  private readonly model: () => Promise<LanguageModel>;
  private readonly steps: Step[];

  constructor(model: () => Promise<LanguageModel>, steps: Step[] = []) {
    this.model = model;
    this.steps = steps;
  }

  private with<T>(step: Step): Chain<T> {
    return new Chain<T>(this.model, [...this.steps, step]);
  }

  /** Evaluates tasks or groups (see `llmbox tasks`), or task config files. */
  evaluate(tasks: string | string[], opts: EvaluateOptions = {}): Chain<Evaluation> {
    const names = Array.isArray(tasks) ? tasks : [tasks];
    return this.with({
      name: `evaluate(${names.join(', ')})`,
      run: async (lm) =>
        new Evaluation(await evaluate(lm, names, { ...opts, onProgress: opts.onProgress ?? kernelProgress() })),
    });
  }

  /**
   * Trains the loaded model in place (pre-training, instruction tuning, or preference optimisation
   * with `stage: 'dpo'`; full or LoRA); later steps of the chain use the trained weights. In a
   * notebook the loss curve (the reward margin for DPO) grows as it trains.
   */
  train(opts: AlignOptions): Chain<Alignment>;
  train(opts: RewardStageOptions): Chain<RewardTraining>;
  train(opts: PpoStageOptions): Chain<Reinforcement>;
  train(opts: TrainOptions): Chain<Training>;
  train(
    opts: TrainOptions | AlignOptions | RewardStageOptions | PpoStageOptions,
  ): Chain<Training> | Chain<Alignment> | Chain<RewardTraining> | Chain<Reinforcement> {
    if (opts.stage === 'dpo') return this.align(opts);
    if (opts.stage === 'rm') return this.rewardModel(opts);
    if (opts.stage === 'ppo') return this.reinforce(opts);
    return this.trains('train', async (lm) => {
      const live = kernelTraining();
      const result = await train(lm.loaded, {
        ...opts,
        onStep: chainCallbacks(opts.onStep, live?.step),
        onEval: chainCallbacks(opts.onEval, live?.eval),
      });
      live?.done(result);
      return new Training(result, opts.datasetRatio);
    });
  }

  /** A step that trains the chain's in-process model in place; later steps see the new weights, even after a failure midway. */
  private trains<T>(name: string, f: (lm: LocalLM) => Promise<T>): Chain<T> {
    return this.with({
      name,
      run: async (model) => {
        const lm = local(model, 'train');
        try {
          return await f(lm);
        } finally {
          lm.weightsChanged();
        }
      },
    });
  }

  private reinforce(opts: PpoStageOptions): Chain<Reinforcement> {
    return this.trains('train (ppo)', async (lm) => {
      const host = displayHost();
      const [bar, chart] = [host?.live(), host?.live()];
      const seen: PpoStep[] = [];
      const { stage: _stage, ...rest } = opts;
      const result = await trainPpo(lm.loaded, {
        ...rest,
        onPpoStep: (m, total) => {
          opts.onPpoStep?.(m, total);
          seen.push(m);
          bar?.update(progressHTML('ppo', m.step, total, `reward ${m.reward.toFixed(3)}, KL ${m.kl.toFixed(3)}`));
          chart?.update(ppoFigure(seen, 'PPO (live)'));
        },
      });
      return new Reinforcement(result);
    });
  }

  private align(opts: AlignOptions): Chain<Alignment> {
    return this.trains('train (dpo)', async (lm) => {
      const live = kernelPreference('dpo', 'preference optimisation (live)');
      const { stage: _stage, ...rest } = opts;
      const result = await trainPreference(lm.loaded, {
        ...rest,
        onPreferenceStep: chainCallbacks(opts.onPreferenceStep, live?.step),
      });
      live?.done(result);
      return new Alignment(result);
    });
  }

  private rewardModel(opts: RewardStageOptions): Chain<RewardTraining> {
    return this.trains('train (rm)', async (lm) => {
      const live = kernelPreference('rm', 'reward model (live)');
      const { stage: _stage, ...rest } = opts;
      const result = await trainReward(lm.loaded, {
        ...rest,
        onRewardStep: chainCallbacks(opts.onRewardStep, live?.step),
      });
      live?.done(result);
      return new RewardTraining(result);
    });
  }

  /** A reward model's score of a response to a prompt (a string is one user turn), under the chat template. */
  reward(prompt: string | Message[], response: string): Chain<number> {
    const turns: Message[] = typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt;
    return this.with({
      name: 'reward',
      run: async (lm) => (await rewardsOf(local(lm, 'reward').loaded, [{ prompt: turns, response }]))[0],
    });
  }

  /** Generates a continuation of each prompt. */
  generate(prompt: string | string[], opts: GenerateOptions = {}): Chain<Generation> {
    const prompts = Array.isArray(prompt) ? prompt : [prompt];
    return this.with({
      name: 'generate',
      run: async (lm) => new Generation(prompts, await generate(local(lm, 'generate').loaded, prompts, opts)),
    });
  }

  /**
   * The assistant's next turn in a conversation (a string is one user turn), under the model's chat
   * template (local: the tokenizer's, else ChatML) or the server's. `onText` gets the reply as it is
   * decoded; in a notebook it is redrawn in place.
   */
  chat(messages: string | Message[], opts: ChatTurnOptions = {}): Chain<Conversation> {
    const history: Message[] = typeof messages === 'string' ? [{ role: 'user', content: messages }] : messages;
    return this.with({
      name: 'chat',
      run: async (lm) => {
        if (!lm.chat)
          throw new LlmboxError(`${lm.modelId} holds no conversations`, {
            field: 'model',
            fix: 'use a local model, an OpenAI-compatible server or anthropic:',
          });
        const live = kernelText();
        const reply = await lm.chat(history, { ...opts, onText: chainCallbacks(opts.onText, live?.add) });
        live?.flush();
        return new Conversation(history, reply);
      },
    });
  }

  /** Scores each option as a continuation of the context (lm-eval's pairing). */
  score(context: string, options: string[]): Chain<Scores> {
    return this.with({
      name: 'score',
      run: async (lm) => {
        if (!options.length) throw new LlmboxError('score needs at least one option', { field: 'options' });
        const res = await lm.loglikelihood(options.map((continuation) => ({ context, continuation })));
        const probs = softmax(res.map((r) => r.logprob));
        return new Scores(
          context,
          options.map((text, i) => ({
            text,
            logprob: res[i].logprob,
            probability: probs[i],
            tokens: res[i].tokens,
            isGreedy: res[i].isGreedy,
          })),
        );
      },
    });
  }

  then<A = R, B = never>(
    onFulfilled?: ((value: R) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.run().then(onFulfilled, onRejected);
  }

  private async run(): Promise<R> {
    let lm: LanguageModel;
    try {
      lm = await this.model();
    } catch (e) {
      throw failed('load', e);
    }
    let last: unknown = lm;
    for (const step of this.steps) {
      try {
        last = await step.run(lm);
      } catch (e) {
        throw failed(step.name, e);
      }
    }
    return last as R;
  }
}

/** In a notebook, a progress bar redrawn in place (at most 5 times a second); elsewhere nothing. */
function kernelProgress(): ((p: Progress) => void) | undefined {
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
function kernelText(): { add: (delta: string) => void; flush: () => void } | undefined {
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

function chainCallbacks<A extends unknown[]>(
  ...fs: (((...a: A) => void) | undefined)[]
): ((...a: A) => void) | undefined {
  const live = fs.filter((f): f is (...a: A) => void => !!f);
  return live.length ? (...a: A) => live.forEach((f) => f(...a)) : undefined;
}

/** In a notebook: a progress line and a loss chart, redrawn in place (the chart at most every 2 s). */
function kernelTraining() {
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

/** A preference run's live progress bar and reward-margin chart in the notebook. */
/** A live progress bar and margin/accuracy chart for pairwise training (DPO, a reward model). */
function kernelPreference(label: string, title: string) {
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

/** The in-process model behind a chain, for the steps that need weights (training, token-level generation). */
function local(lm: LanguageModel, step: string): LocalLM {
  if (lm instanceof LocalLM) return lm;
  throw new LlmboxError(`${step} needs a model loaded in this process; ${lm.modelId} is remote`, {
    field: 'model',
    fix: 'load a model folder, or use evaluate() / score() with remote models',
  });
}

function failed(step: string, e: unknown): Error {
  if (e instanceof LlmboxError)
    return new LlmboxError(`${step}: ${e.message}`, { file: e.file, field: e.field, fix: e.fix });
  const err = new Error(`${step}: ${(e as Error).message ?? e}`);
  err.stack = (e as Error).stack;
  return err;
}

/**
 * The fluent entry point: `await llm.load('path/to/model').evaluate(['arc_easy'], { limit: 100 })`.
 * A model is loaded once per `load()`, when a chain from it is first awaited.
 */
export const llm = {
  /** The same architecture and tokenizer with random weights (a baseline): `llm.load(llm.untrained('stories260K'))`. */
  untrained: untrainedModel,
  /** Several evaluations side by side: one long table and grouped bars. */
  compare(evaluations: Record<string, Evaluation>): Comparison {
    return new Comparison(evaluations);
  },
  /** A file of the shipped data (../shared/data, or LLMBOX_DATA_DIR): `llm.dataFile('sft_samples/x.jsonl')`. */
  dataFile(relative: string): string {
    return resolve(defaultDataDir(), relative);
  },
  /** Shows a figure, table or result in the running notebook cell; returns false outside a kernel. */
  show,
  /** A local model folder (or shipped name), a loaded model, or a remote spec: `openai:M`, `anthropic:M`, `http://HOST:PORT/v1::M`. */
  load(model: string | LoadedModel | Promise<LoadedModel>, opts: LoadOptions = {}): Chain<LanguageModel> {
    let loading: Promise<LanguageModel> | undefined;
    return new Chain<LanguageModel>(() => {
      if (typeof model === 'string' && isRemoteSpec(model))
        loading ??= Promise.resolve().then(() => remoteModel(model, opts));
      loading ??= (
        typeof model === 'string' ? loadModelOrAdapter(model, opts.adapter, opts) : Promise.resolve(model)
      ).then((m) => new LocalLM(m, opts));
      return loading;
    });
  },
};
