// The fluent chain: steps queued on one model, run in order when awaited.
import { LlmboxError } from '../errors.js';
import { evaluate, type EvaluateOptions } from '../eval/evaluate.js';
import { LocalLM } from '../eval/local.js';
import type { ChatTurnOptions, LanguageModel } from '../eval/lm.js';
import { toRecord, type Message, type TrainingRecord } from '../data/records.js';
import { exampleSpans, tokenizeRecord, type TokenizeOptions } from '../data/tokenize.js';
import { softmax } from '../eval/metrics/index.js';
import { generate, type GenerateOptions } from '../models/generate.js';
import { train, type TrainOptions } from '../train/trainer.js';
import { rewardsOf, trainReward, type RewardTrainOptions } from '../train/reward.js';
import { trainPpo, type PpoOptions } from '../train/ppo.js';
import { trainPreference, type PreferenceTrainOptions } from '../train/preference.js';
import {
  Alignment,
  Conversation,
  Evaluation,
  Formatted,
  Generation,
  Reinforcement,
  RewardTraining,
  Scores,
  Training,
} from './results.js';
import { kernelPpo, kernelPreference, kernelProgress, kernelText, kernelTraining } from './live.js';

/** Options of a reward-model stage in the fluent chain: `train({ stage: 'rm', datasets, ... })`. */
export type RewardStageOptions = Omit<RewardTrainOptions, 'stage'> & { stage: 'rm' };

/** Options of a PPO stage in the fluent chain: `train({ stage: 'ppo', prompts, reward, steps, lora })`. */
export type PpoStageOptions = PpoOptions & { stage: 'ppo' };

/** Options of a preference stage in the fluent chain: `train({ stage: 'dpo', ... })`. */
export type AlignOptions = Omit<PreferenceTrainOptions, 'stage'> & { stage: 'dpo' };

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
      const { stage: _stage, ...rest } = opts;
      const result = await trainPpo(lm.loaded, { ...rest, onPpoStep: chainCallbacks(opts.onPpoStep, kernelPpo()) });
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

  /**
   * A training example as this model's tokenizer and template render it, with its loss mask: a
   * string is plain text (pre-training: every token learned), messages or a dataset row (alpaca,
   * ShareGPT, OpenAI, prompt/response) a conversation whose assistant turns are learned.
   */
  format(example: string | Message[] | Record<string, unknown>, opts: TokenizeOptions = {}): Chain<Formatted> {
    return this.with({
      name: 'format',
      run: (lm) => {
        const loaded = local(lm, 'format').loaded;
        const tok = loaded.tokenizer;
        if (!tok) throw new LlmboxError('the model has no tokenizer.json to format text with', { file: loaded.dir });
        const record: TrainingRecord =
          typeof example === 'string'
            ? { kind: 'text', text: example }
            : Array.isArray(example)
              ? { kind: 'chat', messages: example }
              : toRecord(example, { file: 'format()', row: 1 });
        return Promise.resolve(new Formatted(exampleSpans(tok, tokenizeRecord(tok, record, opts))));
      },
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

function chainCallbacks<A extends unknown[]>(
  ...fs: (((...a: A) => void) | undefined)[]
): ((...a: A) => void) | undefined {
  const live = fs.filter((f): f is (...a: A) => void => !!f);
  return live.length ? (...a: A) => live.forEach((f) => f(...a)) : undefined;
}

/** The in-process model behind a chain, for the steps that need weights (training, token-level generation). */
export function local(lm: LanguageModel, step: string): LocalLM {
  if (lm instanceof LocalLM) return lm;
  throw new LlmboxError(`${step} needs a model loaded in this process; ${lm.modelId} is remote`, {
    field: 'model',
    fix: 'load a model folder, or use evaluate() / score() with remote models',
  });
}

function failed(step: string, e: unknown): Error {
  if (e instanceof LlmboxError)
    return new LlmboxError(`${step}: ${e.reason}`, { file: e.file, field: e.field, fix: e.fix });
  const err = new Error(`${step}: ${(e as Error).message ?? e}`);
  err.stack = (e as Error).stack;
  return err;
}
