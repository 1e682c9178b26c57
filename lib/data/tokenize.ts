import { createHash } from 'node:crypto';
import { LlmboxError } from '../errors.js';
import type { TextTokenizer } from '../models/tokenizer.js';
import type { Message, TrainingRecord } from './records.js';

/** A tokenized training example: `labelMask[i]` is 1 where token i is a target (predicted from the tokens before it). */
export interface Example {
  inputIds: number[];
  labelMask: Uint8Array;
}

export type TemplateName = 'alpaca' | 'chatml' | 'plain';

export interface TokenizeOptions {
  /** A named template, or a Jinja chat template (default: the tokenizer's own, else `alpaca`). */
  template?: TemplateName | { jinja: string };
  /** Learn the prompt tokens too (default: only assistant turns). */
  trainOnPrompt?: boolean;
}

interface Segment {
  text: string;
  target: boolean;
}

const ALPACA_SYSTEM =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.';

/** A conversation as text pieces under a named template; assistant replies are the targets. */
function namedSegments(messages: Message[], name: TemplateName): Segment[] {
  const out: Segment[] = [];
  const push = (text: string, target: boolean) => text && out.push({ text, target });
  if (name === 'chatml') {
    for (const m of messages) {
      const role = m.role === 'tool_call' ? 'assistant' : m.role;
      if (m.role === 'assistant' || m.role === 'tool_call') {
        push(`<|im_start|>${role}\n`, false);
        push(`${m.content}<|im_end|>`, true);
        push('\n', false);
      } else push(`<|im_start|>${role}\n${m.content}<|im_end|>\n`, false);
    }
    return out;
  }
  if (name === 'plain') {
    for (const m of messages) push(m.content, m.role === 'assistant' || m.role === 'tool_call');
    return out;
  }
  // Alpaca (Taori et al. 2023), as LLMBox formats instruction data; later turns follow as further instructions.
  const system = messages.find((m) => m.role === 'system')?.content ?? ALPACA_SYSTEM;
  push(`${system}\n\n`, false);
  // A reply follows its "### Response:" directly; the next instruction is set off by a blank line.
  let afterReply = false;
  for (const m of messages) {
    if (m.role === 'system') continue;
    const sep = afterReply ? '\n\n' : '';
    if (m.role === 'user') push(`${sep}### Instruction:\n${m.content}\n\n### Response:\n`, false);
    else if (m.role === 'tool') push(`${sep}### Observation:\n${m.content}\n\n### Response:\n`, false);
    else push(m.content, true);
    afterReply = m.role === 'assistant' || m.role === 'tool_call';
  }
  return out;
}

/**
 * Segments under a Jinja chat template: each assistant reply is what rendering the conversation up
 * to it adds to rendering the turns before it with the generation prompt. Templates that do not
 * render conversations incrementally are refused rather than mis-masked.
 */
function jinjaSegments(tok: TextTokenizer, messages: Message[], template: string): Segment[] {
  const render = (ms: Message[], addGenerationPrompt: boolean) =>
    tok.applyChatTemplate(
      ms.map((m) => ({ role: m.role === 'tool_call' ? 'assistant' : m.role, content: m.content })),
      { template, addGenerationPrompt },
    );
  const out: Segment[] = [];
  let done = '';
  messages.forEach((m, i) => {
    if (m.role !== 'assistant' && m.role !== 'tool_call') return;
    const before = render(messages.slice(0, i), true),
      after = render(messages.slice(0, i + 1), false);
    if (!before.startsWith(done) || !after.startsWith(before)) {
      throw new LlmboxError(
        'the chat template does not render this conversation turn by turn, so assistant turns cannot be located',
        { field: 'chat_template', fix: "pass template: 'chatml' or 'alpaca'" },
      );
    }
    // Whitespace the template puts after a reply (ChatML's newline after <|im_end|>) is not part of it.
    const reply = after.slice(before.length),
      trimmed = reply.trimEnd();
    out.push(
      { text: before.slice(done.length), target: false },
      { text: trimmed, target: true },
      { text: reply.slice(trimmed.length), target: false },
    );
    done = after;
  });
  const all = render(messages, false);
  if (all.startsWith(done) && all.length > done.length) out.push({ text: all.slice(done.length), target: false });
  return out.filter((s) => s.text);
}

/**
 * Tokenizes a record for training. Text: every token is a target. Conversations: rendered by the
 * template, assistant replies are the targets (all tokens with trainOnPrompt), and named templates
 * without an end marker end each reply with EOS.
 */
export function tokenizeRecord(tok: TextTokenizer, record: TrainingRecord, opts: TokenizeOptions = {}): Example {
  const ids: number[] = [],
    mask: number[] = [];
  const add = (toks: number[], target: boolean) => {
    ids.push(...toks);
    mask.push(...toks.map(() => (target ? 1 : 0)));
  };
  const encode = (s: string) => tok.encode(s, { addSpecialTokens: false });
  if (tok.bosTokenId !== undefined && tok.config.add_bos_token !== false) add([tok.bosTokenId], false);
  const eos = tok.eosTokenId !== undefined ? [tok.eosTokenId] : [];
  if (record.kind === 'text') {
    add([...encode(record.text), ...eos], true);
  } else if (record.kind === 'chat') {
    // Rows whose prompt already holds its template are not wrapped in another one.
    const t = opts.template ?? (record.templated ? 'plain' : tok.chatTemplate ? { jinja: tok.chatTemplate } : 'alpaca');
    const segs =
      typeof t === 'string' ? namedSegments(record.messages, t) : jinjaSegments(tok, record.messages, t.jinja);
    const endWithEos = typeof t === 'string' && t !== 'chatml';
    // The whole conversation is encoded once, as the model will read it; each piece's tokens are
    // found by the token count of the text up to its end (lm-eval's rule: a token merged across a
    // boundary belongs to the later piece). Encoding pieces separately would add a word-start marker
    // at every boundary in SentencePiece-style tokenizers.
    const full = segs.map((x) => x.text).join('');
    const fullIds = encode(full);
    let at = 0,
      chars = 0;
    segs.forEach((x, k) => {
      chars += x.text.length;
      const end =
        k === segs.length - 1
          ? fullIds.length
          : Math.max(at, Math.min(fullIds.length, encode(full.slice(0, chars)).length));
      add([...fullIds.slice(at, end), ...(x.target && endWithEos ? eos : [])], x.target || !!opts.trainOnPrompt);
      at = end;
    });
  } else {
    throw new LlmboxError('preference records are trained with DPO, not tokenized as single examples', {
      field: 'kind',
      fix: 'use a preference trainer',
    });
  }
  return { inputIds: ids, labelMask: Uint8Array.from(mask) };
}

/** A run of tokens that are all learned or all context, as the text it decodes to. */
export interface Span {
  text: string;
  learned: boolean;
  tokens: number;
}

/**
 * An example as runs of learned and context tokens. Each run's text is what it adds to the decoded
 * text before it, so word-start markers and special tokens read as the model sees them.
 */
export function exampleSpans(tok: TextTokenizer, example: Example): Span[] {
  const spans: Span[] = [];
  const decoded = (end: number) => tok.decode(example.inputIds.slice(0, end), { skipSpecialTokens: false });
  let start = 0,
    before = '';
  for (let i = 1; i <= example.inputIds.length; i++) {
    if (i < example.inputIds.length && example.labelMask[i] === example.labelMask[start]) continue;
    const upTo = decoded(i);
    spans.push({ text: upTo.slice(before.length), learned: example.labelMask[start] === 1, tokens: i - start });
    [start, before] = [i, upTo];
  }
  return spans;
}

/** What a chat template adds to open the assistant's turn, and the text that ends a reply under it. */
const GENERATION_PROMPT: Record<TemplateName, { open: string; stop: string[] }> = {
  chatml: { open: '<|im_start|>assistant\n', stop: ['<|im_end|>'] },
  alpaca: { open: '', stop: ['### Instruction:'] },
  plain: { open: '', stop: [] },
};

/**
 * A conversation rendered as the prompt for the assistant's next turn, under a named or Jinja
 * template (default: the tokenizer's own, else ChatML), with the stop strings that end a reply.
 */
export function chatPrompt(
  tok: TextTokenizer,
  messages: Message[],
  template?: TemplateName | { jinja: string },
): { text: string; stop: string[]; template: string } {
  const t = template ?? (tok.chatTemplate ? { jinja: tok.chatTemplate } : 'chatml');
  if (typeof t !== 'string') {
    const text = tok.applyChatTemplate(
      messages.map((m) => ({ role: m.role, content: m.content })),
      { template: t.jinja, addGenerationPrompt: true },
    );
    return { text, stop: [], template: `jinja:${createHash('sha256').update(t.jinja).digest('hex').slice(0, 16)}` };
  }
  const g = GENERATION_PROMPT[t];
  return {
    text:
      namedSegments(messages, t)
        .map((s) => s.text)
        .join('') + g.open,
    stop: g.stop,
    template: t,
  };
}
