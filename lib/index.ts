// llmbox's public API, by stage. Most users need only `llm` (the fluent API, first section); the
// sections below it are the parts it is built from, for those who compose their own.

// ── Fluent API ────────────────────────────────────────────────────────────────────────────────
export {
  llm,
  Chain,
  Comparison,
  TrainingComparison,
  Formatted,
  Conversation,
  Evaluation,
  Generation,
  Scores,
  Training,
  Alignment,
  Reinforcement,
  RewardTraining,
  type AlignOptions,
  type RewardStageOptions,
  type PpoStageOptions,
  type LoadOptions,
  type Llm,
} from './llm.js';
export { LlmboxError } from './errors.js';

// ── Engine ────────────────────────────────────────────────────────────────────────────────────
export { initEngine, engineInfo, type EngineInfo, type EngineOptions, type BackendName } from './engine/index.js';

// ── Models: loading, tokenizers, generation, scoring, quantized weights ─────────────────────────
export { parseConfig, readConfig, type ModelConfig, type Architecture } from './models/config.js';
export { LlamaModel } from './models/llama.js';
export { KVCache } from './models/kv-cache.js';
export {
  loadModel,
  saveModel,
  randomModel,
  untrainedModel,
  type LoadedModel,
  type GenerationConfig,
} from './models/load.js';
export { TextTokenizer, type ChatMessage } from './models/tokenizer.js';
export { generate, type GenerateOptions, type GenerateResult } from './models/generate.js';
export { beamSearch, type BeamOptions } from './models/beam.js';
export { nextTokenLogprobs } from './models/score.js';
export { quantizeNF4, dequantizeNF4, NF4_LEVELS, type NF4Tensor } from './models/nf4.js';

// ── Hugging Face Hub ──────────────────────────────────────────────────────────────────────────
export { pull, type PullOptions, type PullProgress, type PullResult } from './hub/pull.js';
export { hubSettings, type HubSettings } from './hub/config.js';

// ── Data: records, formats, mixtures ──────────────────────────────────────────────────────────
export {
  toRecord,
  detectFormat,
  splitTranscript,
  type TrainingRecord,
  type Message,
  type Role,
  type RecordFormat,
} from './data/records.js';
export { readRows, readRecords, datasetInfo, type DataRow, type DatasetInfo } from './data/read.js';
export {
  tokenizeRecord,
  exampleSpans,
  type Span,
  type Example,
  type TemplateName,
  type TokenizeOptions,
} from './data/tokenize.js';
export { mix, type Mixture, type MixtureOptions } from './data/mixture.js';

// ── Evaluation: the model seam, backends, tasks, metrics ────────────────────────────────────────
export {
  assertSupports,
  encodePair,
  type BackendKind,
  type Capabilities,
  type ChatReply,
  type ChatTurnOptions,
  type GenerateUntilRequest,
  type LanguageModel,
  type LoglikelihoodRequest,
  type LoglikelihoodResult,
  type ModelDescription,
  type RequestType,
  type Support,
} from './eval/lm.js';
export { LocalLM, type LocalLMOptions } from './eval/local.js';
export {
  remoteModel,
  isRemoteSpec,
  OpenAICompatibleLM,
  AnthropicLM,
  type RemoteModelOptions,
  type RemoteOptions,
  type RequestStats,
} from './eval/remote/index.js';
export { ChatFormat, withSystemPrompt, type ChatOptions, type ChatTemplate } from './eval/chat.js';
export {
  evaluate,
  evaluateTask,
  expandTasks,
  registerConfigs,
  resolveTasks,
  type EvaluateOptions,
  type EvalRun,
  type TaskResult,
  type GroupResult,
  type MetricValue,
  type Progress,
} from './eval/evaluate.js';
export { mergeRuns } from './eval/merge.js';
export { PrefixCache, type PrefixCacheOptions, type PrefixCacheStats } from './eval/prefix-cache.js';
export { TASKS, GROUPS, type Task, type TaskGroup, type Doc, type Method } from './eval/tasks/index.js';
export { choiceTask, generationTask } from './eval/tasks/define.js';
export { loadTaskConfig, registerTaskConfig, type TaskConfig } from './eval/tasks/declarative.js';
export type { SampleRecord } from './eval/results.js';
export * as metrics from './eval/metrics/index.js';

// ── Training: pre-training, SFT, LoRA/QLoRA, packing, vocabulary, export to GPU trainers ─────────
export { train, evalLoss, type TrainOptions, type TrainResult, type StepMetrics } from './train/trainer.js';
export { pairRows, pairBatch, replyRow, preferenceRecords, type PairRows } from './train/pairs.js';
export {
  trainPreference,
  type PreferenceTrainOptions,
  type PreferenceResult,
  type PreferenceStep,
  type PreferenceEval,
} from './train/preference.js';
export {
  trainReward,
  rewardsOf,
  segmentRewards,
  addRewardHead,
  type RewardTrainOptions,
  type RewardResult,
  type RewardStep,
  type RewardEval,
} from './train/reward.js';
export { trainPpo, type PpoOptions, type PpoResult, type PpoStep, type RewardFunction } from './train/ppo.js';
export {
  preferenceLoss,
  PREFERENCE_LOSSES,
  type PreferenceLoss,
  type PreferenceSettings,
} from './train/preference-loss.js';
export { prepareData, type DataOptions, type PreparedData, type Stage } from './train/data.js';
export {
  packRows,
  unpackedRows,
  chunkRows,
  toBatch,
  type TrainingRow,
  type Batch,
  type RowsReport,
} from './train/batches.js';
export { addLora, mergeLora, dropLora, saveAdapter, loadAdapter, type LoraOptions } from './train/lora.js';
export { loadModelOrAdapter } from './train/adapted.js';
export { AdamW, learningRate, clipByGlobalNorm, type Schedule } from './train/optim.js';
export { learnMerges, expandVocabulary, mergeTokenizer, type VocabExpansion } from './train/vocab.js';
export {
  gpuMemory,
  gpuTable,
  minimumGpus,
  LLAMA2,
  GPUS,
  SETTING_ASSUMPTIONS,
  type GpuCalcInput,
  type GpuCalcResult,
  type GpuSetting,
  type GpuTableRow,
} from './train/gpu-calc.js';
export { exportTraining, planGpus, type ExportTarget, type ExportResult, type GpuPlan } from './train/export.js';

// ── Reports: tables, charts, the display a notebook front end plugs in ──────────────────────────
// The libraries whose types results hold (Arrow tables and vectors, tfjs tensors), reachable through
// llmbox: code that names llmbox by path (a notebook cell, whose declarations tslab emits, in a folder
// that does not depend on them) can then name those types too.
export type { Table, Vector, Schema, Field, DataType, RecordBatch } from 'apache-arrow';
export { tf } from './engine/index.js';
export { resultsTable, samplesTable } from './report/eval-table.js';
export { runSummary, runText, type RunSummary } from './report/summary.js';
export { Figure, plotlyScript, type PlotlyObject } from './report/figure.js';
export { scoresFigure, calibrationFigure, lossFigure, mixtureFigure } from './report/charts.js';
export { htmlTable, textTable } from './report/html-table.js';
export { trainingRunsTable, trainingRunsFigure, trainingMethod, type NamedRun } from './report/training-runs.js';
export {
  show,
  setDisplayHost,
  displayHost,
  progressHTML,
  type DisplayHost,
  type LiveOutput,
} from './report/display.js';

// ── Serving ───────────────────────────────────────────────────────────────────────────────────
export { serve, type ServeOptions, type RunningServer } from './serve/server.js';
