import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cacheDir } from '../../util/paths.js';
import type { Message } from '../../data/records.js';
import type { LanguageModel } from '../lm.js';
import { sha256 } from '../results.js';

/** A chat turn from any model: its chat() where it holds conversations, else a generation over the turns. */
export async function chatTurn(
  lm: LanguageModel,
  messages: Message[],
  opts: { maxNewTokens: number; temperature: number; seed: number; truncate?: boolean },
): Promise<string> {
  if (lm.chat) return (await lm.chat(messages, opts)).text;
  const context = messages.map((m) => `${m.role}: ${m.content}`).join('\n\n') + '\n\nassistant:';
  const [out] = await lm.generateUntil([{ context, messages, until: [], ...opts }]);
  return out;
}

/**
 * The judge's replies, kept on disk by judge and prompt (LLMBOX_CACHE_DIR/judge/<judge>.jsonl, one
 * line appended per reply): a rerun or a resumed run asks the judge nothing it answered before.
 */
export class JudgeCache {
  private readonly file: string;
  private readonly seen = new Map<string, string>();
  constructor(judge: LanguageModel, dir = join(cacheDir(), 'judge')) {
    const id = judge.describe();
    this.file = join(dir, `${sha256(`${id.model}\n${id.model_hash}`).slice(0, 24)}.jsonl`);
    if (!existsSync(this.file)) return;
    for (const line of readFileSync(this.file, 'utf8').split('\n')) {
      try {
        const { key, reply } = JSON.parse(line) as { key: string; reply: string };
        this.seen.set(key, reply);
      } catch {
        // a line cut by a kill is skipped; its judgment is asked again
      }
    }
  }

  async ask(judge: LanguageModel, messages: Message[], maxNewTokens: number): Promise<string> {
    const key = sha256(JSON.stringify(messages));
    const cached = this.seen.get(key);
    if (cached !== undefined) return cached;
    const reply = await chatTurn(judge, messages, { maxNewTokens, temperature: 0, seed: 0 });
    mkdirSync(dirname(this.file), { recursive: true });
    appendFileSync(this.file, JSON.stringify({ key, reply }) + '\n');
    this.seen.set(key, reply);
    return reply;
  }
}

const caches = new WeakMap<LanguageModel, JudgeCache>();
/** The cache of a judge (one per judge model in this process). */
export function judgeCache(judge: LanguageModel): JudgeCache {
  let c = caches.get(judge);
  if (!c) caches.set(judge, (c = new JudgeCache(judge)));
  return c;
}
