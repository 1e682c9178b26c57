// The fluent entry point `llm`; the chain and its result types live in lib/llm/.
import type { Table } from 'apache-arrow';
import { rowsTable, type Cell } from './report/frames.js';
import { resolve } from 'node:path';
import { LlmboxError } from './errors.js';
import { defaultDataDir } from './eval/evaluate.js';
import { LocalLM, type LocalLMOptions } from './eval/local.js';
import type { LanguageModel } from './eval/lm.js';
import { isRemoteSpec, remoteModel, type RemoteModelOptions } from './eval/remote/index.js';
import { untrainedModel, type LoadedModel, type LoadModelOptions } from './models/load.js';
import { loadModelOrAdapter } from './train/adapted.js';
import { show } from './report/display.js';
import { Chain } from './llm/chain.js';
import { Comparison, Evaluation, Training, TrainingComparison } from './llm/results.js';

export { Chain, type AlignOptions, type PpoStageOptions, type RewardStageOptions } from './llm/chain.js';
export * from './llm/results.js';

/** Local models: engine and batching options; remote ones (`openai:M`, `anthropic:M`, `URL::M`): endpoint, key variable, concurrency, cache. */
export type LoadOptions = LoadModelOptions &
  LocalLMOptions &
  RemoteModelOptions & { /** A PEFT LoRA adapter folder applied to a local model. */ adapter?: string };

/** Several evaluations side by side (one long table, grouped bars), or several training runs (one row each, loss curves). */
function compare(evaluations: Record<string, Evaluation>): Comparison;
function compare(runs: Record<string, Training>): TrainingComparison;
function compare(runs: Record<string, Evaluation> | Record<string, Training>): Comparison | TrainingComparison {
  const values = Object.values(runs);
  if (values.length && values.every((v) => v instanceof Evaluation))
    return new Comparison(runs as Record<string, Evaluation>);
  if (values.length && values.every((v) => v instanceof Training))
    return new TrainingComparison(runs as Record<string, Training>);
  throw new LlmboxError('compare takes evaluations or training runs, not both and not none', {
    field: 'compare',
    fix: 'pass { name: await chain.evaluate(...) } or { name: await chain.train(...) }',
  });
}

/**
 * The fluent entry point's shape. It is named so that code holding `llm` (a notebook cell's
 * `const llm = llmbox.llm`, whose declaration tslab emits) never has to spell a dependency's types,
 * such as apache-arrow's Table, by a path of its own.
 */
export interface Llm {
  untrained: typeof untrainedModel;
  compare: typeof compare;
  table(rows: Record<string, Cell>[]): Table;
  dataFile(relative: string): string;
  show: typeof show;
  load(model: string | LoadedModel | Promise<LoadedModel>, opts?: LoadOptions): Chain<LanguageModel>;
}

/**
 * The fluent entry point: `await llm.load('path/to/model').evaluate(['arc_easy'], { limit: 100 })`.
 * A model is loaded once per `load()`, when a chain from it is first awaited.
 */
export const llm: Llm = {
  /** The same architecture and tokenizer with random weights (a baseline): `llm.load(llm.untrained('stories260K'))`. */
  untrained: untrainedModel,
  compare,
  /** Plain rows as an Arrow table (integers as Int32, other numbers float64, booleans, text), shown as a table in a notebook: `llm.table([{ a: 1 }, { a: 2 }])`. */
  table(rows: Record<string, Cell>[]): Table {
    if (!rows.length) throw new LlmboxError('table needs at least one row', { field: 'rows' });
    return rowsTable(rows);
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
