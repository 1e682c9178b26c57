/** One multiple-choice instance, after a task's formatting. */
export interface MultipleChoiceDoc {
  id: string;
  /** The question as the model sees it (without few-shot examples). */
  query: string;
  /** Continuation strings, without the target delimiter. */
  choices: string[];
  gold: number;
}

/**
 * A multiple-choice task in lm-evaluation-harness's terms: docs come from local files, each
 * formatted into a query and choices; few-shot examples are whole solved docs.
 */
export interface MultipleChoiceTask {
  name: string;
  /** Bumped whenever prompts or scoring change, so results record what produced them. */
  version: number;
  /** Folder under the data root holding the task's files. */
  dataFolder: string;
  loadSplit(dataDir: string, split: 'eval' | 'fewshot'): MultipleChoiceDoc[];
  defaultShots: number;
  /** Placed between the query and a choice (lm-eval's target_delimiter). */
  targetDelimiter: string;
  /** Placed between few-shot examples and before the query (lm-eval's fewshot_delimiter). */
  fewshotDelimiter: string;
  /** Optional instruction before everything (lm-eval's description). */
  description?: string;
}
