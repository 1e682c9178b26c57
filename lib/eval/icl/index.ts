import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from '../../util/paths.js';
import { LlmboxError } from '../../errors.js';
import { argmax } from '../../models/sampling.js';
import { writeFileAtomic } from '../../util/fs.js';
import { seededRandom } from '../../util/random.js';
import type { LanguageModel } from '../lm.js';
import { scoreChoices } from '../methods/choice.js';
import { runGeneration } from '../methods/generation.js';
import { exampleTurns, preamble } from '../methods/prompt.js';
import { mean } from '../metrics/index.js';
import { sha256 } from '../results.js';
import type { Doc, Method, Task } from '../tasks/types.js';
import { apeInstruction, apeProposalPrompt, bestCandidate } from './ape.js';
import { drawShots } from './draw.js';
import { shuffled } from '../../data/mixture.js';
import { bestByEntropy, orderings } from './globale.js';
import { kateNeighbours, kateText, type KateOrder } from './kate.js';
import { DEFAULTS } from '../../util/defaults.js';

export { drawShots } from './draw.js';
export type { KateOrder } from './kate.js';

/**
 * How few-shot examples (and the instruction) are chosen. `random`: a seeded draw per instance;
 * `first`: the first k of the few-shot split; `kate`: the k nearest by embedding, per instance;
 * `globale`: k examples drawn once, in the ordering GlobalE prefers; `ape`: the task's examples
 * with an instruction a model proposed, best on dev instances.
 */
export type IclStrategy = 'random' | 'first' | 'kate' | 'globale' | 'ape';
export const ICL_STRATEGIES: readonly IclStrategy[] = ['random', 'first', 'kate', 'globale', 'ape'];

export interface IclOptions {
  /** Default: the task's own (`first` for fixed exemplars such as MMLU dev and CoT prompts, else `random`). */
  strategy?: IclStrategy;
  /** KATE: where the nearest example goes (default nearest-last, KATE's order; LLMBox's is nearest-first). */
  kateOrder?: KateOrder;
  /** KATE: the model whose mean-pooled hidden states are compared (default: the evaluated model). */
  embedder?: LanguageModel;
  /** GlobalE: probe instances (unlabelled, held out) and the most orderings tried. */
  probes?: number;
  orderings?: number;
  /** APE: the model proposing instructions (default: the evaluated one), proposals, demonstrations shown, dev instances. */
  proposer?: LanguageModel;
  candidates?: number;
  demos?: number;
  dev?: number;
  /** Folder for selections kept between runs (default LLMBOX_CACHE_DIR/icl); false: always recompute. */
  cache?: string | false;
}

/** What results record about the selection. */
export interface IclInfo {
  strategy: IclStrategy;
  settings: Record<string, string | number>;
  /** Seconds spent selecting (0 when restored from the cache). */
  seconds: number;
  cached: boolean;
  /** GlobalE: each ordering's label entropy; APE: each candidate and its dev score. */
  details?: Record<string, unknown>;
}

export interface Selection {
  /** The examples of each instance, in prompt order. */
  examples: Doc[][];
  /** An instruction replacing the task's description (APE). */
  instruction?: string;
  info: IclInfo;
}

export interface SelectContext {
  lm: LanguageModel;
  task: Task;
  method: Method;
  docs: Doc[];
  pool: Doc[];
  shots: number;
  seed: number;
  icl?: IclOptions;
}

interface Stored {
  examples: string[][];
  instruction?: string;
  details?: Record<string, unknown>;
}

/** Chooses every instance's examples (and APE's instruction), from the cache when this selection was made before. */
export async function selectExamples(ctx: SelectContext): Promise<Selection> {
  const icl = ctx.icl ?? {};
  const strategy = icl.strategy ?? ctx.task.fewshotOrder;
  if (strategy === 'random' || strategy === 'first') {
    const random = seededRandom(ctx.seed);
    return {
      examples: ctx.docs.map((d) => drawShots(strategy, ctx.pool, ctx.shots, d.id, random)),
      info: { strategy, settings: {}, seconds: 0, cached: false },
    };
  }
  if (strategy === 'kate' && ctx.shots === 0)
    throw new LlmboxError(`--icl kate chooses few-shot examples, and ${ctx.task.name} runs 0-shot`, {
      field: '--shots',
      fix: 'pass --shots k (k > 0) with --icl kate',
    });
  const settings = settingsOf(strategy, icl);
  const file = cacheFile(ctx, strategy, settings);
  const byId = new Map(ctx.pool.map((d) => [d.id, d]));
  const restored = file ? restore(file, byId, ctx.docs.length) : undefined;
  if (restored)
    return { ...restored, info: { strategy, settings, seconds: 0, cached: true, details: restored.details } };
  const started = Date.now();
  const made =
    strategy === 'kate' ? await kate(ctx, icl) : strategy === 'globale' ? await globalE(ctx, icl) : await ape(ctx, icl);
  if (file) {
    const stored: Stored = {
      examples: made.examples.map((ex) => ex.map((d) => d.id)),
      instruction: made.instruction,
      details: made.details,
    };
    writeFileAtomic(file, JSON.stringify(stored));
  }
  return {
    ...made,
    info: { strategy, settings, seconds: (Date.now() - started) / 1000, cached: false, details: made.details },
  };
}

function settingsOf(strategy: IclStrategy, icl: IclOptions): Record<string, string | number> {
  const d = DEFAULTS.icl;
  if (strategy === 'kate')
    return { order: icl.kateOrder ?? d.kateOrder, embedder: icl.embedder ? icl.embedder.describe().model : 'self' };
  if (strategy === 'globale') return { probes: icl.probes ?? d.probes, orderings: icl.orderings ?? d.orderings };
  return {
    proposer: icl.proposer ? icl.proposer.describe().model : 'self',
    candidates: icl.candidates ?? d.candidates,
    demos: icl.demos ?? d.demos,
    dev: icl.dev ?? d.dev,
  };
}

/** The selection's cache file: everything that changes it is in the key (models by weights hash, docs by content). */
function cacheFile(ctx: SelectContext, strategy: IclStrategy, settings: Record<string, unknown>): string | undefined {
  const dir = ctx.icl?.cache === false ? undefined : (ctx.icl?.cache ?? join(cacheDir(), 'icl'));
  if (!dir) return undefined;
  const hashOf = (lm: LanguageModel | undefined) => (lm ? [lm.modelId, lm.describe().model_hash] : null);
  const docsHash = (docs: Doc[]) => sha256(docs.map((d) => sha256(JSON.stringify(d))).join(''));
  const key = sha256(
    JSON.stringify({
      v: 1,
      task: ctx.task.name,
      version: ctx.task.version,
      method: ctx.method,
      shots: ctx.shots,
      seed: ctx.seed,
      strategy,
      settings,
      lm: hashOf(ctx.lm),
      embedder: hashOf(ctx.icl?.embedder),
      proposer: hashOf(ctx.icl?.proposer),
      docs: docsHash(ctx.docs),
      pool: ctx.pool === ctx.docs ? 'docs' : docsHash(ctx.pool),
    }),
  );
  return join(dir, `${ctx.task.name}-${strategy}-${key.slice(0, 24)}.json`);
}

function restore(
  file: string,
  byId: Map<string, Doc>,
  n: number,
): (Omit<Selection, 'info'> & Pick<Stored, 'details'>) | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as Stored;
    if (!Array.isArray(s.examples) || s.examples.length !== n) return undefined;
    const examples = s.examples.map((ids) => ids.map((id) => byId.get(id)));
    if (examples.some((ex) => ex.some((d) => !d))) return undefined;
    return { examples: examples as Doc[][], instruction: s.instruction, details: s.details };
  } catch {
    return undefined; // a damaged cache entry is recomputed, never trusted
  }
}

/** Pool examples that are not evaluated: GlobalE's and APE's examples, probes and dev instances come from these. */
function heldOut(ctx: SelectContext, need: number, strategy: string): Doc[] {
  const evaluated = new Set(ctx.docs.map((d) => d.id));
  const free = ctx.pool.filter((d) => !evaluated.has(d.id));
  if (free.length < need)
    throw new LlmboxError(
      `--icl ${strategy} needs ${need} examples outside the evaluated instances, but ${ctx.task.name}'s few-shot pool has ${free.length} left`,
      {
        field: '--icl',
        fix: 'use --limit to leave instances of the split free, or fewer --shots / probes / dev instances',
      },
    );
  return free;
}

async function kate(ctx: SelectContext, icl: IclOptions): Promise<Omit<Selection, 'info'> & Pick<Stored, 'details'>> {
  const embedder = icl.embedder ?? ctx.lm;
  if (!embedder.embed)
    throw new LlmboxError(`--icl kate compares embeddings, and ${embedder.modelId} gives none`, {
      field: '--icl',
      fix: 'pass --embed-model DIR (a local model folder whose hidden states are compared)',
    });
  const pv = await embedAll(embedder, ctx.pool.map(kateText));
  const qv = ctx.pool === ctx.docs ? pv : await embedAll(embedder, ctx.docs.map(kateText));
  const order = icl.kateOrder ?? DEFAULTS.icl.kateOrder;
  return { examples: ctx.docs.map((d, i) => kateNeighbours(qv[i], d.id, ctx.pool, pv, ctx.shots, order)) };
}

/**
 * Embeddings already computed in this process, per embedding model and weights (a model trained
 * since embeds again): another KATE setting on the same pool embeds nothing again.
 */
const embedded = new WeakMap<LanguageModel, { hash: string; vectors: Map<string, number[]> }>();

async function embedAll(lm: LanguageModel, texts: string[]): Promise<number[][]> {
  const hash = lm.describe().model_hash;
  let entry = embedded.get(lm);
  if (!entry || entry.hash !== hash) embedded.set(lm, (entry = { hash, vectors: new Map() }));
  const memo = entry.vectors;
  const missing = [...new Set(texts.filter((t) => !memo.has(t)))];
  if (missing.length) (await lm.embed!(missing)).forEach((v, i) => memo.set(missing[i], v));
  return texts.map((t) => memo.get(t)!);
}

const optionCount = (d: Doc) => d.choiceContexts?.length ?? d.choices?.length ?? 0;

function requireChoice(ctx: SelectContext, strategy: string): void {
  if (ctx.method === 'ppl' || ctx.method === 'prob') return;
  throw new LlmboxError(
    `--icl ${strategy} scores predicted options, and ${ctx.task.name} runs with method ${ctx.method}`,
    {
      field: '--icl',
      fix: `use --icl ${strategy} on multiple-choice tasks (method ppl or prob), or --icl kate / random here`,
    },
  );
}

async function globalE(
  ctx: SelectContext,
  icl: IclOptions,
): Promise<Omit<Selection, 'info'> & Pick<Stored, 'details'>> {
  requireChoice(ctx, 'globale');
  if (ctx.shots < 2)
    throw new LlmboxError('--icl globale orders few-shot examples, and fewer than 2 are asked', {
      field: '--shots',
      fix: 'use --shots 2 or more with --icl globale',
    });
  const nProbes = icl.probes ?? DEFAULTS.icl.probes;
  const random = seededRandom(ctx.seed);
  const free = shuffled(heldOut(ctx, ctx.shots + nProbes, 'globale'), random);
  const chosen = free.slice(0, ctx.shots);
  const probes = free.slice(ctx.shots, ctx.shots + nProbes);
  const orders = orderings(ctx.shots, icl.orderings ?? DEFAULTS.icl.orderings, random);
  // One call for every (ordering, probe): the prefix cache shares each ordering's examples across its probes.
  const scored = await scoreChoices(
    ctx.lm,
    ctx.task,
    ctx.method,
    orders.flatMap(() => probes),
    orders.flatMap((o) =>
      probes.map((p) =>
        preamble(
          ctx.task,
          ctx.method,
          p,
          o.map((i) => chosen[i]),
        ),
      ),
    ),
  );
  const predicted = orders.map((_, o) =>
    probes.map((p, j) => argmax(scored[o * probes.length + j].results.slice(0, optionCount(p)).map((r) => r.logprob))),
  );
  const { best, entropies } = bestByEntropy(predicted);
  const examples = orders[best].map((i) => chosen[i]);
  return {
    examples: ctx.docs.map(() => examples),
    details: {
      orderings: orders.length,
      entropy: { best: entropies[best], min: Math.min(...entropies), max: Math.max(...entropies) },
      chosen: examples.map((d) => d.id),
      probes: probes.map((d) => d.id),
    },
  };
}

async function ape(ctx: SelectContext, icl: IclOptions): Promise<Omit<Selection, 'info'> & Pick<Stored, 'details'>> {
  const d = DEFAULTS.icl;
  const nDemos = icl.demos ?? d.demos,
    nDev = icl.dev ?? d.dev;
  const random = seededRandom(ctx.seed);
  const free = shuffled(heldOut(ctx, nDemos + nDev, 'ape'), random);
  const demos = free.slice(0, nDemos);
  const dev = free.slice(nDemos, nDemos + nDev);
  const prompt = apeProposalPrompt(
    demos.map((x) => exampleTurns(ctx.task, ctx.method, x).map((m) => m.content) as [string, string]),
  );
  const proposer = icl.proposer ?? ctx.lm;
  const proposals = await proposer.generateUntil(
    Array.from({ length: icl.candidates ?? d.candidates }, (_, j) => ({
      context: prompt,
      messages: [{ role: 'user' as const, content: prompt }],
      until: ['\n'],
      maxNewTokens: d.instructionTokens,
      temperature: d.proposalTemperature,
      seed: ctx.seed + j,
    })),
  );
  const candidates = [...new Set(proposals.map(apeInstruction).filter(Boolean))];
  // The task's own description competes too: APE never keeps a proposal the dev set scores lower.
  const options: (string | undefined)[] = [undefined, ...candidates.map((c) => `${c}\n\n`)];
  const shotsOf = (v: Doc) => drawShots('first', demos, ctx.shots, v.id, random);
  const scores = await devScores(ctx, dev, options, shotsOf);
  const best = bestCandidate(scores);
  const random2 = seededRandom(ctx.seed);
  return {
    examples: ctx.docs.map((x) => drawShots(ctx.task.fewshotOrder, ctx.pool, ctx.shots, x.id, random2)),
    instruction: options[best],
    details: {
      kept: best === 0 ? 'task default' : candidates[best - 1],
      candidates: options.map((o, i) => ({
        instruction: o === undefined ? 'task default' : o.trim(),
        score: scores[i].score,
      })),
      demos: demos.map((x) => x.id),
      dev: dev.map((x) => x.id),
    },
  };
}

/** Each instruction's mean score on the dev instances: accuracy (gold log-likelihood breaks ties), or the task's first generation metric. */
async function devScores(
  ctx: SelectContext,
  dev: Doc[],
  options: (string | undefined)[],
  shotsOf: (v: Doc) => Doc[],
): Promise<{ score: number; tieBreak: number }[]> {
  const docs = options.flatMap(() => dev);
  const pre = options.flatMap((o) => dev.map((v) => preamble(ctx.task, ctx.method, v, shotsOf(v), o)));
  const slice = <T>(xs: T[], i: number) => xs.slice(i * dev.length, (i + 1) * dev.length);
  if (ctx.method === 'gen') {
    const gen = await runGeneration(ctx.lm, ctx.task, docs, pre, { seed: ctx.seed });
    return options.map((_, i) => ({
      score: mean(slice(gen, i).map((g) => Object.values(g.metrics)[0] ?? 0)),
      tieBreak: 0,
    }));
  }
  requireChoice(ctx, 'ape');
  const scored = await scoreChoices(ctx.lm, ctx.task, ctx.method, docs, pre);
  return options.map((_, i) => {
    const mine = slice(scored, i);
    return {
      score: mean(mine.map((s) => s.metrics.acc ?? Object.values(s.metrics)[0] ?? 0)),
      tieBreak: mean(mine.map((s, j) => s.results[dev[j].gold ?? 0].logprob / s.results[dev[j].gold ?? 0].tokens)),
    };
  });
}
