import { createHash } from 'node:crypto';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { readFileSync, existsSync } from 'node:fs';
import { LlmboxError } from '../errors.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

type Json = Record<string, unknown>;

function readJson(file: string, required: boolean): Json | undefined {
  if (!existsSync(file)) {
    if (!required) return undefined;
    throw new LlmboxError('tokenizer file not found', {
      file,
      fix: 'the model folder needs tokenizer.json (Hugging Face fast tokenizer)',
    });
  }
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new LlmboxError(`not valid JSON: ${(e as Error).message}`, { file });
  }
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

/** A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) with its chat template. */
export class TextTokenizer {
  private readonly tok: Tokenizer;
  readonly config: Json;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  readonly padTokenId: number | undefined;
  readonly chatTemplate: string | undefined;
  readonly vocabSize: number;
  private readonly json: Json;
  /** The tokenizer.json this tokenizer was built from. */
  get definition(): Json {
    return this.json;
  }
  private hash: string | undefined;

  /**
   * A hash of tokenizer.json and tokenizer_config.json: what tokenized caches are keyed by. Computed
   * when first asked (serialising a large vocabulary is not work for every model load).
   */
  get fingerprint(): string {
    this.hash ??= createHash('sha256')
      .update(JSON.stringify(this.json))
      .update(JSON.stringify(this.config))
      .digest('hex')
      .slice(0, 16);
    return this.hash;
  }

  constructor(tokenizerJson: Json, config: Json = {}) {
    this.tok = new Tokenizer(tokenizerJson, config);
    this.config = config;
    this.json = tokenizerJson;
    const id = (key: string) => {
      const c = tokenContent(config[key]);
      return c === undefined ? undefined : this.tok.token_to_id(c);
    };
    this.bosTokenId = id('bos_token');
    this.eosTokenId = id('eos_token');
    this.padTokenId = id('pad_token');
    const tpl = config.chat_template;
    this.chatTemplate = typeof tpl === 'string' ? tpl : undefined;
    this.vocabSize = this.tok.get_vocab(true).size;
  }

  static fromDir(dir: string): TextTokenizer {
    const file = `${dir}/tokenizer.json`;
    const json = readJson(file, true)!;
    const config = readJson(`${dir}/tokenizer_config.json`, false) ?? {};
    try {
      return new TextTokenizer(json, config);
    } catch (e) {
      // The library's own messages ("Tokenizer must contain a decoder") do not say which file.
      throw new LlmboxError(`not a valid Hugging Face tokenizer: ${(e as Error).message}`, {
        file,
        fix: 'use the tokenizer.json saved with the model (a fast tokenizer: tokenizer.save_pretrained)',
      });
    }
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    return this.tok.decode(ids, { skip_special_tokens: opts.skipSpecialTokens ?? true });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  /** Renders messages with the model's chat template (or `template`), as transformers does. */
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean; template?: string } = {}): string {
    const source = opts.template ?? this.chatTemplate;
    if (!source) {
      throw new LlmboxError('this tokenizer has no chat template', {
        field: 'chat_template',
        fix: 'pass a template explicitly, or use a model whose tokenizer_config.json has chat_template',
      });
    }
    return new Template(source).render({
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? true,
      bos_token: tokenContent(this.config.bos_token) ?? '',
      eos_token: tokenContent(this.config.eos_token) ?? '',
    });
  }
}
