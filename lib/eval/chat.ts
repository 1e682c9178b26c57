/**
 * Prompts for chat models: the conversation a request carries, rendered with the model's Jinja chat
 * template (tokenizer_config.json) or a named one, after an optional system prompt.
 */
import type { Message } from '../data/records.js';
import { chatPrompt, type TemplateName } from '../data/tokenize.js';
import { LlmboxError } from '../errors.js';
import type { TextTokenizer } from '../models/tokenizer.js';

export type ChatTemplate = TemplateName | { jinja: string };

export interface ChatOptions {
  /** Default: the tokenizer's chat template, else ChatML. */
  template?: ChatTemplate;
  systemPrompt?: string;
}

/** The system prompt first: merged into a system message the conversation already opens with (a task's description). */
export function withSystemPrompt(messages: Message[], systemPrompt: string | undefined): Message[] {
  if (systemPrompt === undefined) return messages;
  if (messages[0]?.role === 'system')
    return [{ role: 'system', content: `${systemPrompt}\n\n${messages[0].content}` }, ...messages.slice(1)];
  return [{ role: 'system', content: systemPrompt }, ...messages];
}

/** The turns of a request; an error for requests built without them. */
export function requestMessages(messages: Message[] | undefined, caller: string): Message[] {
  if (!messages?.length)
    throw new LlmboxError(`${caller}: a chat model needs the request as chat turns`, {
      field: '--model-type',
      fix: 'use --model-type base for raw-text prompts',
    });
  return messages;
}

export class ChatFormat {
  /** The template's name, or `jinja:<hash>` (what results record). */
  readonly templateId: string;
  /** The rendered prompt opens with BOS, written by the template itself. */
  readonly writesBos: boolean;
  private readonly bosText: string | undefined;

  constructor(
    private readonly tok: TextTokenizer,
    readonly opts: ChatOptions = {},
  ) {
    const probe = chatPrompt(tok, [{ role: 'user', content: 'x' }], opts.template);
    this.templateId = probe.template;
    const bos = tok.config.bos_token;
    this.bosText =
      typeof bos === 'string'
        ? bos
        : bos && typeof bos === 'object'
          ? String((bos as { content?: unknown }).content ?? '') || undefined
          : undefined;
    this.writesBos = !!this.bosText && probe.text.startsWith(this.bosText);
  }

  /** The prompt for the assistant's next turn (without a BOS the template wrote: the model adds it as a token) and the strings that end a reply. */
  render(messages: Message[]): { text: string; stop: string[] } {
    const { text, stop } = chatPrompt(this.tok, withSystemPrompt(messages, this.opts.systemPrompt), this.opts.template);
    return { text: this.writesBos ? text.slice(this.bosText!.length) : text, stop };
  }
}
