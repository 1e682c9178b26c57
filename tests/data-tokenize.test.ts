// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { toRecord, type TrainingRecord } from '../lib/data/records.js';
import { tokenizeRecord } from '../lib/data/tokenize.js';
import { readJsonl } from '../lib/data/files.js';
import { loadModel } from '../lib/models/load.js';
import type { TextTokenizer } from '../lib/models/tokenizer.js';
import { SHARED_DATA, STORIES } from './helpers/models.js';

const DATA = SHARED_DATA;
/** ChatML as a Jinja template, the way Hugging Face tokenizer configs write it. */
const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

describe('tokenizing training records', () => {
  let tok: TextTokenizer;
  beforeAll(async () => {
    tok = (await loadModel(STORIES)).tokenizer!;
  });
  const enc = (s: string) => tok.encode(s, { addSpecialTokens: false });

  const noSpecial = (ids: number[]) => ids.filter((t) => t !== tok.bosTokenId && t !== tok.eosTokenId);
  const targetText = (ids: number[], mask: Uint8Array) => tok.decode(noSpecial(ids.filter((_, i) => mask[i])));

  it('prompt/response rows: the text encoded once, only the response and EOS are targets', () => {
    const row = readJsonl(`${DATA}/sft_samples/dolly_hhrlhf_train_small.jsonl`)[0];
    const prompt = row.prompt as string,
      response = row.response as string;
    const ex = tokenizeRecord(tok, toRecord(row, { file: 'd', row: 0 }), { template: 'plain' });
    expect(ex.inputIds).toEqual([tok.bosTokenId!, ...enc(prompt + response), tok.eosTokenId!]);
    // The tokenizer normalises some whitespace, so the reference is the response as it decodes.
    expect(targetText(ex.inputIds, ex.labelMask)).toBe(tok.decode(enc(response)));
    expect(ex.inputIds[ex.inputIds.length - 1]).toBe(tok.eosTokenId);
    expect(ex.labelMask[ex.labelMask.length - 1]).toBe(1);
    const all = tokenizeRecord(tok, toRecord(row, { file: 'd', row: 0 }), { template: 'plain', trainOnPrompt: true });
    expect(Array.from(all.labelMask)).toEqual(all.inputIds.map((_, i) => (i === 0 ? 0 : 1)));
  });

  it('alpaca template: the Stanford prompt around each instruction, assistant replies (and EOS) as targets', () => {
    const rec: TrainingRecord = {
      kind: 'chat',
      messages: [
        { role: 'user', content: 'Name a color.' },
        { role: 'assistant', content: 'Red.' },
        { role: 'user', content: 'Another?' },
        { role: 'assistant', content: 'Blue.' },
      ],
    };
    const ex = tokenizeRecord(tok, rec);
    expect(tok.decode(noSpecial(ex.inputIds))).toBe(
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' +
        '### Instruction:\nName a color.\n\n### Response:\nRed.\n\n### Instruction:\nAnother?\n\n### Response:\nBlue.',
    );
    expect(ex.inputIds.filter((t, i) => t === tok.eosTokenId && ex.labelMask[i])).toHaveLength(2);
    expect(targetText(ex.inputIds, ex.labelMask)).toBe('Red.Blue.');
  });

  it('a Jinja chat template masks the same tokens as the equivalent named template', () => {
    const file = `${DATA}/sft_samples/fastchat_dummy_conversation.sharegpt.json`;
    const rows = JSON.parse(readFileSync(file, 'utf8')).slice(0, 20) as Record<string, unknown>[];
    for (const [i, row] of rows.entries()) {
      const rec = toRecord(row, { file, row: i });
      const a = tokenizeRecord(tok, rec, { template: 'chatml' });
      const b = tokenizeRecord(tok, rec, { template: { jinja: CHATML } });
      expect(b.inputIds).toEqual(a.inputIds);
      expect(Array.from(b.labelMask)).toEqual(Array.from(a.labelMask));
      if (rec.kind !== 'chat') throw new Error('expected a conversation');
      expect(targetText(a.inputIds, a.labelMask)).toBe(
        rec.messages
          .filter((m) => m.role === 'assistant')
          .map((m) => `${m.content}<|im_end|>`)
          .join(''),
      );
    }
  });

  it('text records are all targets; templates that do not render turn by turn are refused', () => {
    const ex = tokenizeRecord(tok, { kind: 'text', text: 'Once upon a time' });
    expect(ex.inputIds).toEqual([tok.bosTokenId!, ...enc('Once upon a time'), tok.eosTokenId!]);
    expect(Array.from(ex.labelMask)).toEqual(ex.inputIds.map((_, i) => (i === 0 ? 0 : 1)));
    const reversed = "{% for m in messages|reverse %}{{ m['content'] }}{% endfor %}";
    const rec: TrainingRecord = {
      kind: 'chat',
      messages: [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
        { role: 'user', content: 'c' },
        { role: 'assistant', content: 'd' },
      ],
    };
    expect(() => tokenizeRecord(tok, rec, { template: { jinja: reversed } })).toThrow(
      /does not render this conversation turn by turn/,
    );
    expect(() => tokenizeRecord(tok, { kind: 'preference', prompt: [], chosen: 'a', rejected: 'b' })).toThrow(/DPO/);
  });
});
