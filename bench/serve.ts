/**
 * llmbox serve under 1, 4 and 16 concurrent clients (the official openai SDK on loopback), beside
 * the in-process engine on the same requests, in one run: scoring (HellaSwag endings through
 * /v1/completions with echo and log-probabilities) and greedy generation (32 tokens).
 *
 *   npm run bench:serve                       # stories260K and a random config-B model
 *   npm run bench:serve -- --models stories260K --requests 64
 *
 * Requests/s counts completed HTTP requests; tokens/s counts prompt tokens scored (scoring) or
 * tokens generated (generation). The in-process rows run the same requests through LocalLM
 * (scoring, batch 8, with and without the prefix cache) and generate() in batches of 8.
 */
import OpenAI from 'openai';
import { fileURLToPath } from 'node:url';
import { initEngine } from '../lib/engine/index.js';
import { LocalLM } from '../lib/eval/local.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import { generate } from '../lib/models/generate.js';
import { loadModel, randomModel, type LoadedModel } from '../lib/models/load.js';
import { serve } from '../lib/serve/server.js';
import { arg } from './common.js';

const STORIES = fileURLToPath(new URL('../../shared/models/stories260K', import.meta.url));
const DATA = fileURLToPath(new URL('../../shared/data/hellaswag', import.meta.url));
const B_CONFIG = {
  model_type: 'llama',
  vocab_size: 512,
  hidden_size: 768,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_key_value_heads: 12,
  max_position_embeddings: 512,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

async function model(name: string): Promise<LoadedModel> {
  const stories = await loadModel(STORIES);
  return name === 'stories260K'
    ? stories
    : { ...stories, dir: 'random-B', model: randomModel(B_CONFIG, { seed: 1, std: 0.02 }) };
}

/** Runs `jobs` with `clients` workers pulling from one queue; seconds taken. */
async function timed(jobs: (() => Promise<void>)[], clients: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < jobs.length) await jobs[next++]();
    }),
  );
  return (performance.now() - t0) / 1000;
}

interface Row {
  model: string;
  workload: string;
  engine: string;
  requests: number;
  seconds: number;
  tokens: number;
}

async function main() {
  await initEngine({});
  const models = (arg('models') ?? 'stories260K,B').split(',');
  const n = Number(arg('requests') ?? 128);
  const docs = TASKS.hellaswag.loadSplit(DATA, 'eval').slice(0, Math.ceil(n / 4));
  const pairs = docs.flatMap((d) => d.choices!.map((c) => ({ context: d.query, continuation: ` ${c}` }))).slice(0, n);
  const prompts = docs.map((d) => d.query).slice(0, Math.max(8, n / 4));
  const rows: Row[] = [];
  for (const name of models) {
    const lm = await model(name);
    const server = await serve(lm, { port: 0, modelName: name });
    const client = new OpenAI({ baseURL: server.url, apiKey: 'EMPTY', maxRetries: 0 });
    const promptTokens = pairs.reduce((a, p) => a + lm.tokenizer!.encode(p.context + p.continuation).length, 0);
    // Warm-up: the first forward passes compile and allocate.
    await client.completions.create({
      model: name,
      prompt: pairs[0].context,
      max_tokens: 2,
      echo: true,
      logprobs: 1,
      temperature: 0,
    });
    for (const clients of [1, 4, 16]) {
      let tokens = 0;
      const s = await timed(
        pairs.map((p) => async () => {
          await client.completions.create({
            model: name,
            prompt: p.context + p.continuation,
            max_tokens: 0,
            echo: true,
            logprobs: 1,
            temperature: 0,
          });
        }),
        clients,
      );
      rows.push({
        model: name,
        workload: 'scoring',
        engine: `serve, ${clients} client${clients > 1 ? 's' : ''}`,
        requests: pairs.length,
        seconds: s,
        tokens: promptTokens,
      });
      const g = await timed(
        prompts.map((prompt) => async () => {
          const r = await client.completions.create({ model: name, prompt, max_tokens: 32, temperature: 0 });
          tokens += r.usage!.completion_tokens;
        }),
        clients,
      );
      rows.push({
        model: name,
        workload: 'generation',
        engine: `serve, ${clients} client${clients > 1 ? 's' : ''}`,
        requests: prompts.length,
        seconds: g,
        tokens,
      });
    }
    for (const prefixCache of [false, true]) {
      const local = new LocalLM(lm, { batchSize: 8, prefixCache });
      const t0 = performance.now();
      await local.loglikelihood(pairs);
      rows.push({
        model: name,
        workload: 'scoring',
        engine: `in-process LocalLM${prefixCache ? ' + prefix cache' : ''}`,
        requests: pairs.length,
        seconds: (performance.now() - t0) / 1000,
        tokens: promptTokens,
      });
    }
    const t0 = performance.now();
    let generated = 0;
    for (let i = 0; i < prompts.length; i += 8)
      generated += (await generate(lm, prompts.slice(i, i + 8), { maxNewTokens: 32 })).reduce(
        (a, r) => a + r.ids.length,
        0,
      );
    rows.push({
      model: name,
      workload: 'generation',
      engine: 'in-process generate, batch 8',
      requests: prompts.length,
      seconds: (performance.now() - t0) / 1000,
      tokens: generated,
    });
    process.stderr.write(
      `${name}: largest server batch ${server.engine.stats.largestBatch}, ${server.engine.stats.batches} batches for ${server.engine.stats.requests} requests\n`,
    );
    await server.close();
  }
  console.log('| model | workload | engine | requests | s | requests/s | tokens/s | vs in-process |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const base = rows.find(
      (x) =>
        x.model === r.model &&
        x.workload === r.workload &&
        x.engine.startsWith('in-process') &&
        !x.engine.includes('prefix'),
    )!;
    const ratio = r.requests / r.seconds / (base.requests / base.seconds);
    console.log(
      `| ${r.model} | ${r.workload} | ${r.engine} | ${r.requests} | ${r.seconds.toFixed(2)} | ${(r.requests / r.seconds).toFixed(1)} | ${Math.round(r.tokens / r.seconds)} | ${ratio.toFixed(2)}x |`,
    );
  }
}

await main();
