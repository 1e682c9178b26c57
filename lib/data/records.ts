import { LlmboxError } from '../errors.js';

export type Role = 'system' | 'user' | 'assistant' | 'tool_call' | 'tool';

export interface Message {
  role: Role;
  content: string;
}

/**
 * Every training source becomes one of these: plain text (pre-training), a conversation whose
 * assistant turns are the targets (instruction tuning, alpaca/sharegpt/openai/prompt-response), or
 * a preference pair (DPO).
 */
export type TrainingRecord =
  | { kind: 'text'; text: string }
  /** `templated`: the prompt already carries its template (prompt/response rows), so it is read as plain text. */
  | { kind: 'chat'; messages: Message[]; tools?: string; templated?: boolean }
  | { kind: 'preference'; prompt: Message[]; chosen: string; rejected: string };

export type RecordFormat = 'text' | 'alpaca' | 'sharegpt' | 'openai' | 'prompt_response' | 'preference';

/** ShareGPT speaker names (FastChat and LLaMA-Factory conventions) to roles. */
const SHAREGPT_ROLES: Record<string, Role> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  chatgpt: 'assistant',
  bing: 'assistant',
  bard: 'assistant',
  system: 'system',
  function_call: 'tool_call',
  observation: 'tool',
};
const OPENAI_ROLES: Record<string, Role> = {
  system: 'system',
  user: 'user',
  assistant: 'assistant',
  tool: 'tool',
  function: 'tool',
  developer: 'system',
};

/** Which format a row is in, from its fields (LLaMA-Factory's column conventions). */
export function detectFormat(row: Record<string, unknown>): RecordFormat | undefined {
  if (Array.isArray(row.conversations)) return 'sharegpt';
  // UltraFeedback-binarized rows carry messages too; chosen and rejected make them pairs.
  if ('chosen' in row && 'rejected' in row) return 'preference';
  if (Array.isArray(row.messages)) return 'openai';
  if ('instruction' in row && 'output' in row) return 'alpaca';
  if ('prompt' in row && 'response' in row) return 'prompt_response';
  if (typeof row.text === 'string') return 'text';
  return undefined;
}

/**
 * A pair given as message lists (UltraFeedback-binarized): each list is the conversation ending in
 * the assistant's reply; the prompt is the turns before it (the chosen list's), or the row's prompt.
 */
function messagePair(row: Record<string, unknown>, where: { file: string; row: number }): TrainingRecord {
  const reply = (key: 'chosen' | 'rejected') => {
    const list = row[key];
    const last = Array.isArray(list) ? (list[list.length - 1] as { role?: unknown; content?: unknown }) : undefined;
    if (!last || last.role !== 'assistant' || typeof last.content !== 'string')
      throw new LlmboxError(
        `row ${where.row + 1}: ${key} should be a list of messages ending with the assistant's reply`,
        {
          file: where.file,
          field: key,
          fix: 'give both chosen and rejected as [{role, content}, ...] lists, or both as strings',
        },
      );
    return { list: list as { role: string; content: string }[], text: last.content };
  };
  const chosen = reply('chosen'),
    rejected = reply('rejected');
  const turns = chosen.list.slice(0, -1).map((m) => ({ role: m.role, content: m.content }) as Message);
  const prompt = turns.length
    ? turns
    : typeof row.prompt === 'string'
      ? [{ role: 'user' as const, content: row.prompt }]
      : [];
  if (!prompt.length)
    throw new LlmboxError(
      `row ${where.row + 1}: the pair has no prompt (no turns before the replies, no prompt field)`,
      {
        file: where.file,
        field: 'chosen',
      },
    );
  return { kind: 'preference', prompt, chosen: chosen.text, rejected: rejected.text };
}

function str(row: Record<string, unknown>, key: string, where: { file: string; row: number }): string {
  const v = row[key];
  if (typeof v !== 'string')
    throw new LlmboxError(
      `row ${where.row + 1}: field ${key} should be a string, got ${JSON.stringify(v)?.slice(0, 60)}`,
      { file: where.file, field: key },
    );
  return v;
}

function turns(
  list: unknown,
  roleKey: string,
  textKey: string,
  roles: Record<string, Role>,
  field: string,
  where: { file: string; row: number },
): Message[] {
  if (!Array.isArray(list))
    throw new LlmboxError(`row ${where.row + 1}: field ${field} should be a list of turns`, {
      file: where.file,
      field,
    });
  return list.map((t: Record<string, unknown>, i) => {
    const role = roles[String(t?.[roleKey])];
    if (!role)
      throw new LlmboxError(
        `row ${where.row + 1}: ${field}.${i}.${roleKey} ${JSON.stringify(t?.[roleKey])} is not one of ${Object.keys(roles).join(', ')}`,
        { file: where.file, field: `${field}.${i}.${roleKey}` },
      );
    const content = t[textKey];
    if (typeof content !== 'string')
      throw new LlmboxError(`row ${where.row + 1}: ${field}.${i}.${textKey} should be a string`, {
        file: where.file,
        field: `${field}.${i}.${textKey}`,
      });
    return { role, content };
  });
}

/**
 * Anthropic HH's transcript layout ("\n\nHuman: ...\n\nAssistant: ..."): the turns before the last
 * assistant reply, and that reply.
 */
export function splitTranscript(text: string): { prompt: Message[]; reply: string } | undefined {
  const parts = text.split(/\n\n(Human|Assistant): /).slice(1);
  const messages: Message[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2)
    messages.push({ role: parts[i] === 'Human' ? 'user' : 'assistant', content: parts[i + 1] });
  const last = messages.pop();
  return last?.role === 'assistant' ? { prompt: messages, reply: last.content } : undefined;
}

/** Alpaca's history: [user, assistant] string pairs, anything else an error naming the row. */
function alpacaHistory(v: unknown, where: { file: string; row: number }): Message[] {
  if (v === undefined || v === null) return [];
  const pairs = Array.isArray(v) ? v : [v];
  return pairs.flatMap((p, i) => {
    if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'string' || typeof p[1] !== 'string') {
      throw new LlmboxError(
        `row ${where.row + 1}: history[${i}] should be a [user, assistant] pair of strings, got ${JSON.stringify(p)?.slice(0, 60)}`,
        { file: where.file, field: 'history' },
      );
    }
    return [
      { role: 'user' as const, content: p[0] },
      { role: 'assistant' as const, content: p[1] },
    ];
  });
}

/** One row of a training file as a record; `format` defaults to what the row's fields say. */
export function toRecord(
  row: Record<string, unknown>,
  where: { file: string; row: number },
  format = detectFormat(row),
): TrainingRecord {
  switch (format) {
    case 'text':
      return { kind: 'text', text: str(row, 'text', where) };
    case 'alpaca': {
      // instruction + input as the user turn; optional system and history ([user, assistant] pairs) before it.
      const input = typeof row.input === 'string' && row.input ? `\n${row.input}` : '';
      const history = alpacaHistory(row.history, where);
      const system =
        typeof row.system === 'string' && row.system ? [{ role: 'system' as const, content: row.system }] : [];
      return {
        kind: 'chat',
        messages: [
          ...system,
          ...history,
          { role: 'user', content: str(row, 'instruction', where) + input },
          { role: 'assistant', content: str(row, 'output', where) },
        ],
      };
    }
    case 'sharegpt': {
      const messages = turns(row.conversations, 'from', 'value', SHAREGPT_ROLES, 'conversations', where);
      const system =
        typeof row.system === 'string' && row.system ? [{ role: 'system' as const, content: row.system }] : [];
      return {
        kind: 'chat',
        messages: [...system, ...messages],
        ...(typeof row.tools === 'string' ? { tools: row.tools } : {}),
      };
    }
    case 'openai':
      return { kind: 'chat', messages: turns(row.messages, 'role', 'content', OPENAI_ROLES, 'messages', where) };
    case 'prompt_response':
      // The prompt already carries its template (e.g. Alpaca's "### Instruction: ... ### Response:"): one user turn as is.
      return {
        kind: 'chat',
        messages: [
          { role: 'user', content: str(row, 'prompt', where) },
          { role: 'assistant', content: str(row, 'response', where) },
        ],
        templated: true,
      };
    case 'preference': {
      if (Array.isArray(row.chosen) || Array.isArray(row.rejected)) return messagePair(row, where);
      const chosen = str(row, 'chosen', where),
        rejected = str(row, 'rejected', where);
      if (typeof row.prompt === 'string')
        return { kind: 'preference', prompt: [{ role: 'user', content: row.prompt }], chosen, rejected };
      // Transcripts (Anthropic HH): the prompt is what both share up to the last "Assistant:" turn
      // they have in common (TRL's rule; a few HH rows diverge before their final turn).
      let common = 0;
      while (common < Math.min(chosen.length, rejected.length) && chosen[common] === rejected[common]) common++;
      const cut = chosen.lastIndexOf('\n\nAssistant: ', common - '\n\nAssistant: '.length);
      const prompt = cut >= 0 ? splitTranscript(chosen.slice(0, cut) + '\n\nAssistant: x') : undefined;
      if (!prompt) {
        throw new LlmboxError(
          `row ${where.row + 1}: no prompt field, and chosen/rejected are not transcripts with a shared prompt`,
          { file: where.file, field: 'chosen', fix: 'add a prompt field' },
        );
      }
      const start = cut + '\n\nAssistant: '.length;
      return {
        kind: 'preference',
        prompt: prompt.prompt,
        chosen: chosen.slice(start),
        rejected: rejected.slice(start),
      };
    }
    default:
      throw new LlmboxError(`row ${where.row + 1}: cannot tell the format from fields ${Object.keys(row).join(', ')}`, {
        file: where.file,
        fix: 'use text, instruction/input/output, conversations (from/value), messages (role/content), prompt/response or prompt/chosen/rejected',
      });
  }
}
