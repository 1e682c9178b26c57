// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SHARED_DATA, STORIES } from './helpers/models.js';

const BIN = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));
const ref = JSON.parse(readFileSync(`${STORIES}/REFERENCE.json`, 'utf8'));

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, LLMBOX_QUIET: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('llmbox CLI (built: npm run build)', () => {
  it('env --json reports backend, threads, native add-on and versions', () => {
    const r = run('env', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(['tensorflow', 'wasm', 'cpu']).toContain(j.backend);
    expect(j.threads).toBeGreaterThan(0);
    expect(typeof j.native.enabled).toBe('boolean');
    expect(j.versions.tfjs).toBe('4.22.0');
  });

  it('generate --json prints the reference greedy continuation', () => {
    const g = ref.greedy[0];
    const r = run('generate', '-m', STORIES, '-p', g.prompt, '--max-new-tokens', '20', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.prompt_ids).toEqual(g.prompt_ids);
    expect(j.ids).toEqual(g.continuation_ids.slice(0, 20));
    expect(g.continuation_text.startsWith(j.text)).toBe(true);
  });

  it('logprobs --json matches the reference', () => {
    const t = ref.teacher_forcing[0];
    const r = run('logprobs', '-m', STORIES, '--ids', t.ids.join(','), '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.ids).toEqual(t.ids);
    j.logprobs.forEach((x: number, i: number) => expect(Math.abs(x - t.next_token_logprobs[i])).toBeLessThan(1e-4));
  });

  it('bad input exits non-zero with a message naming the problem', () => {
    const missing = run('generate', '-m', '/no/such/model', '-p', 'hi');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/model folder not found[\s\S]*\/no\/such\/model/);
    const both = run('logprobs', '-m', STORIES);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/exactly one of --text and --ids/);
    const badIds = run('logprobs', '-m', STORIES, '--ids', '1,x');
    expect(badIds.code).toBe(2);
    expect(badIds.stderr).toMatch(/^llmbox: option '--ids <ids>' argument '1,x' is invalid\. --ids must be/);
    // The argument parser's errors follow the same contract: "llmbox: ...", exit code 2.
    for (const args of [
      ['eval', '-d', 'hellaswag'],
      ['eval', '-m', STORIES, '-d', 'hellaswag', '--endpoint', 'soap'],
      ['nosuch'],
      ['eval', '-m', STORIES, '-d', 'hellaswag', '--shard', '2/2'],
    ]) {
      const r = run(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/^llmbox: /);
    }
    expect(run('--version').code).toBe(0);
    expect(run('eval', '--help').code).toBe(0);
  });

  it('every numeric and enumerated flag is checked: bad values exit 2 naming the flag', () => {
    const SFT = `${SHARED_DATA}/sft_samples/dolly_hhrlhf_train_small.jsonl`;
    const cases: [string[], RegExp][] = [
      [
        ['generate', '-m', STORIES, '-p', 'x', '--temperature', 'abc'],
        /--temperature must be a number in \[0, Infinity\]/,
      ],
      [['generate', '-m', STORIES, '-p', 'x', '--temperature', '-1'], /--temperature/],
      [
        ['generate', '-m', STORIES, '-p', 'x', '--repetition-penalty', '0'],
        /--repetition-penalty must be a number in \(0, Infinity\]/,
      ],
      [['generate', '-m', STORIES, '-p', 'x', '--top-p', '1.5'], /--top-p/],
      [['logprobs', '-m', STORIES, '--ids', ''], /--ids must be/],
      [['logprobs', '-m', STORIES, '--ids', '1,,2'], /--ids must be/],
      [['eval', '-m', STORIES, '-d', ''], /no tasks given[\s\S]*--dataset/],
      [
        ['eval', '-m', STORIES, '-d', 'gsm8k', '--samples', '2', '--temperature', 'hot'],
        /--temperature must be a number in \[0, 2\]/,
      ],
      [
        ['train', '-m', STORIES, '--dataset', SFT, '--output', '/tmp/x', '--mix', 'shuffle'],
        /'--mix <strategy>' argument 'shuffle' is invalid\. Allowed choices are ratio, concat, interleave/,
      ],
      [
        ['train', '-m', STORIES, '--dataset', SFT, '--output', '/tmp/x', '--template', 'llama'],
        /'--template <name>' argument 'llama' is invalid\. Allowed choices are alpaca, chatml, plain/,
      ],
      [
        ['gpu-calc', '--params', '7e9', '--layers', 'many', '--hidden', '4096', '--vocab', '32000'],
        /--layers must be an integer/,
      ],
      [
        ['eval', '-m', STORIES, '-d', 'arc_easy', '--output', '/proc/llmbox'],
        /is on a kernel pseudo-filesystem[\s\S]*--output/,
      ],
      [
        ['eval', '-m', STORIES, '-d', 'arc_easy', '--output', `${BIN}/results`],
        /a file stands where a folder is needed/,
      ],
      [['train', '-m', STORIES, '--dataset', SFT, '--output', `${BIN}/x`], /cannot write to/],
      // Every other subcommand, with input it cannot use.
      [['serve', '-m', '/no/such/model', '--port', '0'], /model folder not found/],
      [['merge', '/no/such/run', '--output', '/tmp/llmbox-merge-test'], /no results_\*\.json here/],
      [
        ['merge-tokenizer', '-m', STORIES, '--input', SFT, '--vocab', '0', '--output', '/tmp/x'],
        /--vocab must be an integer >= 1/,
      ],
      [['kernel', 'start', '--config-path', '/no/such/kernel.json'], /connection file not found/],
      [['kernel', 'install', '--bogus'], /unknown option '--bogus'/],
      [['tasks', '--bogus'], /unknown option/],
      [['env', '--backend', 'tpu'], /argument 'tpu' is invalid/],
      [['eval', '-m', 'http://127.0.0.1:9/v1', '-d', 'arc_easy'], /names no model/],
      [
        ['gpu-calc', '--setting', 'fsdp', '--params', '1e9', '--layers', '2', '--hidden', '64', '--vocab', '100'],
        /argument 'fsdp' is invalid\. Allowed choices are zero3, ddp, lora, qlora/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = run(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/^llmbox: /);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
  });
});
