import { LlmboxError } from '../../errors.js';
import { AnthropicLM } from './anthropic.js';
import { OpenAICompatibleLM, type Endpoint } from './openai.js';
import type { RemoteOptions } from './transport.js';

export { AnthropicLM } from './anthropic.js';
export { OpenAICompatibleLM, scoreSpan } from './openai.js';
export { RequestCache, defaultRequestCacheDir } from './request-cache.js';
export type { RemoteOptions, RequestStats } from './transport.js';

export interface RemoteModelOptions extends RemoteOptions {
  /** Default: chat for --model-type chat, else completions. */
  endpoint?: Endpoint;
  /** base: raw prompts (completions); chat: chat turns (the server applies the template). */
  modelType?: 'base' | 'chat';
  systemPrompt?: string;
}

/** A model spec names a remote model: `openai:MODEL`, `anthropic:MODEL`, or `URL::MODEL[,URL::MODEL...]`. */
export function isRemoteSpec(spec: string): boolean {
  return /^(openai|anthropic):/.test(spec) || /^https?:\/\//.test(spec);
}

/**
 * The remote model a spec names. Several `URL::MODEL` entries (the same model on several servers)
 * share the requests between them.
 */
export function remoteModel(spec: string, opts: RemoteModelOptions = {}): OpenAICompatibleLM | AnthropicLM {
  const endpoint = opts.endpoint ?? (opts.modelType === 'chat' ? 'chat' : 'completions');
  if (opts.modelType === 'chat' && endpoint === 'completions')
    throw new LlmboxError('--model-type chat sends chat turns, which /v1/completions does not take', {
      field: '--model-type',
      fix: 'use --endpoint chat (the server applies its chat template)',
    });
  if (opts.modelType === 'base' && (endpoint === 'chat' || spec.startsWith('anthropic:')))
    throw new LlmboxError('a chat endpoint applies a chat template: it serves chat models only', {
      field: '--model-type',
      fix: 'use --model-type chat, or --endpoint completions for raw prompts',
    });
  if (spec.startsWith('anthropic:')) {
    if (opts.endpoint === 'completions')
      throw new LlmboxError('the Anthropic API has no completions endpoint', {
        field: '--endpoint',
        fix: 'leave --endpoint out for anthropic: models',
      });
    return new AnthropicLM({ ...opts, model: need(spec.slice('anthropic:'.length), spec) });
  }
  if (spec.startsWith('openai:')) {
    return new OpenAICompatibleLM({
      ...opts,
      endpoint,
      apiKeyEnv: opts.apiKeyEnv ?? 'OPENAI_API_KEY',
      servers: [process.env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1'],
      model: need(spec.slice('openai:'.length), spec),
    });
  }
  const entries = spec
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  const parsed = entries.map((e) => {
    const at = e.lastIndexOf('::');
    if (at < 0)
      throw new LlmboxError(`${e} names no model`, {
        field: '--model',
        fix: 'write the server and the model as http://HOST:PORT/v1::MODEL',
      });
    const url = e.slice(0, at);
    try {
      new URL(url);
    } catch {
      throw new LlmboxError(`${url} is not a URL`, {
        field: '--model',
        fix: 'write the server and the model as http://HOST:PORT/v1::MODEL',
      });
    }
    return { url, model: need(e.slice(at + 2), e) };
  });
  const models = new Set(parsed.map((p) => p.model));
  if (models.size > 1)
    throw new LlmboxError(`the servers name different models (${[...models].join(', ')})`, {
      field: '--model',
      fix: 'several servers must serve the same model',
    });
  return new OpenAICompatibleLM({ ...opts, endpoint, servers: parsed.map((p) => p.url), model: parsed[0].model });
}

function need(model: string, spec: string): string {
  if (!model)
    throw new LlmboxError(`${spec} names no model`, {
      field: '--model',
      fix: 'e.g. openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, http://127.0.0.1:8000/v1::MODEL',
    });
  return model;
}
