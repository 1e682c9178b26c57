import type { GenerateUntilRequest, LanguageModel } from '../lm.js';
import type { SampleRecord } from '../results.js';

/**
 * How an instance is scored. `ppl`: log-likelihood of each option's text given the context
 * (LLMBox's "completion perplexity"); `prob`: the options listed with letters in the context and the
 * likelihood of each letter (LLMBox's "option probability"); `gen`: free generation, then answer
 * extraction and a metric; `rolling`: log-likelihood of whole documents in windows (perplexity).
 */
export type Method = 'ppl' | 'prob' | 'gen' | 'rolling';

export type Split = 'eval' | 'fewshot';

/** One instance after a task's formatting (the paper's `format_instance`). */
export interface Doc {
  id: string;
  /** The instance's prompt as the model sees it, without few-shot examples or description. */
  query: string;
  /** Option texts of a multiple-choice instance (continuations for `ppl`). */
  choices?: string[];
  /** Index of the correct option. */
  gold?: number;
  /**
   * Partial scoring (Winogrande): one context per option and `query` as the shared continuation,
   * so the options are compared by how well they predict the same text.
   */
  choiceContexts?: string[];
  /** The bare question, for listing the options under it (`prob`). */
  question?: string;
  /** What follows the query in a few-shot example of a generation task (a worked solution). */
  target?: string;
  /** Acceptable answers of a generation task (aliases, a number, unit tests). */
  references?: string[];
  /** Anything else a task's metric needs (unit tests, labels of several correct options). */
  extra?: Record<string, unknown>;
}

/** Per-option results handed to a task's own metric. */
export interface ChoiceScores {
  logprobs: number[];
  isGreedy: boolean[];
  tokens: number[];
}

export interface GenerationSpec {
  until: string[];
  maxNewTokens: number;
  /** The answer inside the generated text (regex, first/last number, option letter, a program's result); one entry per filter. */
  filters: Record<string, (text: string, doc: Doc) => string | Promise<string>>;
  /** Metric values of one extracted answer against the doc's references (a judge model, where the task is judged). */
  score(answer: string, doc: Doc, ctx?: ScoreContext): Record<string, number> | Promise<Record<string, number>>;
  /** Scoring asks a judge model (MT-Bench): evaluation refuses to start without one. */
  judged?: boolean;
  /**
   * With several samples per instance: `vote` scores the most frequent extracted answer
   * (self-consistency); `pass@k` scores each sample and reports the unbiased pass@k.
   */
  samples?: 'vote' | 'pass@k';
  /** Scoring runs the generated code (in the sandbox): evaluation checks the sandbox before the first request. */
  executesCode?: boolean;
  /**
   * A generation procedure of several calls (least-to-most: decompose, then answer each
   * sub-question in turn) in place of one generateUntil per request; returns one text per request.
   */
  solve?: (lm: LanguageModel, requests: GenerateUntilRequest[], docs: Doc[]) => Promise<string[]>;
}

/** What a task's scoring may call on besides the answer: the judge model of LLM-as-judge tasks. */
export interface ScoreContext {
  judge?: LanguageModel;
}

/**
 * Chain-of-thought prompting: `none` answers directly, `base` reasons step by step before the
 * answer (the datasets' CoT exemplars), `least-to-most` decomposes the problem and answers the
 * sub-questions in order, `pal` writes a Python program whose result is the answer.
 */
export type CotMode = 'none' | 'base' | 'least-to-most' | 'pal';

export interface CotSupport {
  /** The mode the task itself runs. */
  default: CotMode;
  /** The task under each other mode it offers. */
  variants: Partial<Record<CotMode, () => Task>>;
}

/** How per-instance values of a metric become the task's number. */
export type Aggregation = 'mean' | 'perplexity';

/**
 * A task in lm-evaluation-harness's terms (the paper's `load_dataset` / `format_instance` /
 * `reference` shape): docs come from local files, each formatted into a query and options or
 * references; few-shot examples are solved docs.
 */
export interface Task {
  name: string;
  /** Bumped whenever prompts or scoring change, so results record what produced them. */
  version: number;
  /** Folder under the data root holding the task's files. */
  dataFolder: string;
  /** Reads what loadSplit needs asynchronously (config tasks' data files); evaluation awaits it before loadSplit. */
  prepare?(dataDir: string): Promise<void>;
  /** Loads one split; few-shot examples come from the `fewshot` split (tasks without one draw from `eval`, never the instance itself). */
  loadSplit(dataDir: string, split: Split): Doc[];
  methods: Method[];
  defaultMethod: Method;
  defaultShots: number;
  /** `first`: the first k docs of the few-shot split in order (MMLU dev, fixed CoT exemplars); `random`: a seeded draw per instance. */
  fewshotOrder: 'first' | 'random';
  /** Placed between the query and a choice or target (lm-eval's target_delimiter). */
  targetDelimiter: string;
  /** Placed after each few-shot example (lm-eval's fewshot_delimiter). */
  fewshotDelimiter: string;
  /** Instruction before everything (lm-eval's description), per doc for grouped tasks. */
  description?: (doc: Doc) => string;
  generation?: GenerationSpec;
  /**
   * A content-free context (e.g. "Answer:") for the mutual-information score: each option's
   * log-likelihood after the question minus after this context (acc_mi; LLMBox calibrates ARC and
   * OpenBookQA this way).
   */
  calibration?: string;
  /** Replaces acc/acc_norm for multiple-choice tasks whose metric is not "pick the best option". */
  choiceMetrics?: (scores: ChoiceScores, doc: Doc) => Record<string, number>;
  /** Aggregations other than the mean, by metric name. */
  aggregations?: Record<string, Aggregation>;
  /** Metrics defined on the whole set rather than per instance (corpus BLEU, word perplexity); stderr by bootstrap. */
  corpus?: Record<string, (samples: SampleRecord[]) => number>;
  /** The chain-of-thought modes the task offers (`--cot`). */
  cot?: CotSupport;
}

/** A named set of tasks reported one by one and together (MMLU's 57 subjects, BBH's 27 tasks). */
export interface TaskGroup {
  name: string;
  tasks: string[];
  /** `micro`: every instance counts once (lm-eval's MMLU); `macro`: every task counts once. */
  aggregate: 'micro' | 'macro';
}
