export { LlmboxError } from './errors.js';
export { initEngine, engineInfo, type EngineInfo, type EngineOptions, type BackendName } from './engine/index.js';
export { parseConfig, readConfig, type ModelConfig, type Architecture } from './models/config.js';
export { LlamaModel } from './models/llama.js';
export { KVCache } from './models/kv-cache.js';
export { loadModel, saveModel, randomModel, type LoadedModel, type GenerationConfig } from './models/load.js';
export { TextTokenizer, type ChatMessage } from './models/tokenizer.js';
export { generate, type GenerateOptions, type GenerateResult } from './models/generate.js';
export { nextTokenLogprobs } from './models/score.js';
