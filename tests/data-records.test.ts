// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectFormat, splitTranscript, toRecord } from '../lib/data/records.js';
import { readJsonl } from '../lib/data/files.js';
import { readRecords, readRows, streamRecords } from '../lib/data/read.js';
import { SHARED_DATA, tmp } from './helpers/models.js';

const DATA = SHARED_DATA;
const at = (file: string, row = 0) => ({ file, row });

describe('training records from the shipped formats', () => {
  it('reads ShareGPT conversations, including tool calls and observations', () => {
    const file = `${DATA}/sft_samples/glaive_toolcall_en_demo.sharegpt.json`;
    const rows = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>[];
    const records = rows.map((r, i) => toRecord(r, at(file, i)));
    expect(records).toHaveLength(300);
    const first = records[0];
    expect(first.kind).toBe('chat');
    if (first.kind !== 'chat') return;
    expect(first.messages.map((m) => m.role)).toEqual(
      (rows[0].conversations as { from: string }[]).map(
        (t) => ({ human: 'user', gpt: 'assistant', function_call: 'tool_call', observation: 'tool' })[t.from],
      ),
    );
    expect(typeof first.tools).toBe('string');
    const dummy = JSON.parse(
      readFileSync(`${DATA}/sft_samples/fastchat_dummy_conversation.sharegpt.json`, 'utf8'),
    ) as Record<string, unknown>[];
    expect(dummy.every((r, i) => toRecord(r, at('x', i)).kind === 'chat')).toBe(true);
  });

  it('reads prompt/response rows as one templated user turn and its reply', () => {
    const file = `${DATA}/sft_samples/dolly_hhrlhf_train_small.jsonl`;
    const rows = readJsonl(file);
    expect(detectFormat(rows[0])).toBe('prompt_response');
    const r = toRecord(rows[0], at(file));
    expect(r).toEqual({
      kind: 'chat',
      messages: [
        { role: 'user', content: rows[0].prompt },
        { role: 'assistant', content: rows[0].response },
      ],
      templated: true,
    });
  });

  it('splits Anthropic HH transcripts into a shared prompt and the chosen/rejected replies', () => {
    const file = `${DATA}/hh_rlhf/harmless-base_test.jsonl`;
    const rows = readJsonl(file);
    const r = toRecord(rows[0], at(file));
    expect(r.kind).toBe('preference');
    if (r.kind !== 'preference') return;
    expect(r.prompt[0]).toEqual({ role: 'user', content: 'what are some pranks with a pen i can do?' });
    expect((rows[0].chosen as string).endsWith(r.chosen)).toBe(true);
    expect((rows[0].rejected as string).endsWith(r.rejected)).toBe(true);
    expect(rows.every((row, i) => toRecord(row, at(file, i)).kind === 'preference')).toBe(true);
    // A row whose chosen side diverges before its last turn: the prompt is the shared part.
    const odd = toRecord(rows[1254], at(file, 1254));
    if (odd.kind !== 'preference') throw new Error('expected a preference record');
    expect(odd.prompt.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    expect(odd.rejected.startsWith('A drag king is the opposite')).toBe(true);
    expect(odd.chosen.startsWith('No. Men who impersonate')).toBe(true);
    expect(() => toRecord({ chosen: 'a', rejected: 'b' }, at('p.jsonl', 2))).toThrow(/row 3: no prompt field/);
    expect(splitTranscript('\n\nHuman: hi')).toBeUndefined();
  });

  it('reads alpaca (with input, system, history), openai messages and text, and names bad rows', () => {
    expect(
      toRecord(
        { instruction: 'Add', input: '2 and 3', output: '5', system: 'Be brief.', history: [['hi', 'hello']] },
        at('a.json'),
      ),
    ).toEqual({
      kind: 'chat',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'hello' },
        { role: 'user', content: 'Add\n2 and 3' },
        { role: 'assistant', content: '5' },
      ],
    });
    expect(
      toRecord(
        {
          messages: [
            { role: 'user', content: 'q' },
            { role: 'assistant', content: 'a' },
          ],
        },
        at('m.jsonl'),
      ).kind,
    ).toBe('chat');
    expect(toRecord({ text: 'Once upon a time' }, at('t.jsonl'))).toEqual({ kind: 'text', text: 'Once upon a time' });
    expect(() => toRecord({ conversations: [{ from: 'robot', value: 'x' }] }, at('s.json', 4))).toThrow(
      /row 5: conversations.0.from "robot" is not one of/,
    );
    expect(() => toRecord({ foo: 1 }, at('f.json'))).toThrow(/cannot tell the format from fields foo/);
  });

  it('refuses data that would train silently wrong: binary files, history that is not pairs, missing and empty files; accepts a BOM', async () => {
    const dir = tmp();
    writeFileSync(
      join(dir, 'garbage.txt'),
      Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00, 0xff, 0xfe, 0x0a, 0x41]),
    );
    await expect(readRows(join(dir, 'garbage.txt'))).rejects.toThrow(/line 1 is not UTF-8 text/);
    const streamed = async () => {
      for await (const _ of streamRecords(join(dir, 'garbage.txt'))) void _;
    };
    await expect(streamed()).rejects.toThrow(/not UTF-8 text/);
    expect(() => toRecord({ instruction: 'q', output: 'a', history: [['only one']] }, at('h.json', 2))).toThrow(
      /row 3: history\[0\] should be a \[user, assistant\] pair of strings/,
    );
    expect(() => toRecord({ instruction: 'q', output: 'a', history: [[1, 2]] }, at('h.json'))).toThrow(/history\[0\]/);
    writeFileSync(join(dir, 'bom.jsonl'), '\uFEFF{"text": "first"}\n{"text": "second"}\n');
    expect(await readRows(join(dir, 'bom.jsonl'))).toEqual([{ text: 'first' }, { text: 'second' }]);
    const rows: unknown[] = [];
    for await (const r of streamRecords(join(dir, 'bom.jsonl'))) rows.push(r);
    expect(rows).toEqual([
      { kind: 'text', text: 'first' },
      { kind: 'text', text: 'second' },
    ]);
    writeFileSync(join(dir, 'empty.parquet'), '');
    await expect(readRows(join(dir, 'empty.parquet'))).rejects.toThrow(/empty file \(0 bytes\)/);
    writeFileSync(join(dir, 'dataset_info.json'), JSON.stringify({ mine: { file_name: 'nowhere.json' } }));
    const missing = await readRecords('mine', { dataDir: dir }).catch((e) => e);
    expect(missing.message).toMatch(/dataset mine: its file nowhere.json does not exist/);
    expect(missing.file).toBe(join(dir, 'nowhere.json'));
  });
});
