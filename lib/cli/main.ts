import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { LlmboxError } from '../errors.js';
import { prepareOutputDir } from '../util/fs.js';
import { envSecret } from '../util/env.js';
import { initEngine, type BackendName, type EngineOptions } from '../engine/index.js';
import { generate, generateStream } from '../models/generate.js';
import { loadModelOrAdapter } from '../train/adapted.js';
import { exportTraining } from '../train/export.js';
import { nextTokenLogprobs } from '../models/score.js';
import { evaluate, expandTasks, registerConfigs, writeRun, type EvalRun, type MetricValue, type Progress } from '../eval/evaluate.js';
import { mergeRuns } from '../eval/merge.js';
import { LocalLM } from '../eval/local.js';
import type { ChatTemplate } from '../eval/chat.js';
import { isRemoteSpec, remoteModel } from '../eval/remote/index.js';
import { GROUPS, TASKS, type Method } from '../eval/tasks/index.js';
import { readConfig } from '../models/config.js';
import { parameterShapes } from '../models/llama.js';
import { installKernel, kernelSpec } from '../kernel/install.js';
import { train, type StepMetrics } from '../train/trainer.js';
import { mergeTokenizer } from '../train/vocab.js';
import { GPUS, gpuMemory, LLAMA2, minimumGpus, SETTING_ASSUMPTIONS, type GpuSetting } from '../train/gpu-calc.js';

function int(name: string, min = 0) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

function float(name: string, min: number, max = Infinity, opts: { minExclusive?: boolean } = {}) {
  return (v: string) => {
    const n = v.trim() === '' ? NaN : Number(v);
    if (!Number.isFinite(n) || n < min || n > max || (opts.minExclusive && n === min)) {
      throw new InvalidArgumentError(`${name} must be a number in ${opts.minExclusive ? '(' : '['}${min}, ${max}]`);
    }
    return n;
  };
}

/** One of the listed words. */
function oneOf(name: string, values: readonly string[]) {
  return (v: string) => {
    if (!values.includes(v)) throw new InvalidArgumentError(`${name} must be one of ${values.join(', ')}`);
    return v;
  };
}

function idList(v: string): number[] {
  const parts = v.split(',').map((s) => s.trim());
  const ids = parts.map(Number);
  // Number('') is 0: an empty entry ("1,,2", "") is an error, not token 0.
  if (parts.some((p) => p === '') || ids.some((x) => !Number.isInteger(x) || x < 0)) {
    throw new InvalidArgumentError('--ids must be comma-separated non-negative integers, e.g. 1,403,407');
  }
  return ids;
}

interface GlobalOpts {
  backend?: BackendName;
  threads?: number;
}

function engineOpts(cmd: Command): EngineOptions {
  const g = cmd.optsWithGlobals<GlobalOpts>();
  return { backend: g.backend, threads: g.threads };
}

/** A named chat template, or the Jinja template in a file. */
function chatTemplateOption(v: string | undefined): ChatTemplate | undefined {
  if (v === undefined) return undefined;
  return v === 'chatml' || v === 'alpaca' || v === 'plain' ? v : { jinja: readTextFile(v, '--chat-template') };
}

function readTextFile(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new LlmboxError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file, field: flag });
  }
}

function print(json: boolean, obj: unknown, text: string) {
  process.stdout.write(json ? JSON.stringify(obj) + '\n' : text + '\n');
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildCli(): Command {
  const program = new Command('llmbox')
    // Parser errors follow the same contract as llmbox's own: "llmbox: ..." and exit code 2 (see main).
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`llmbox: ${text.replace(/^error: /, '')}`) })
    .description('Train, use and evaluate large language models')
    .version(packageVersion())
    .addOption(new Option('--backend <name>', 'tfjs backend').choices(['tensorflow', 'wasm', 'cpu']))
    .addOption(new Option('--threads <n>', 'compute threads (BLAS)').argParser(int('--threads', 1)));

  program
    .command('env')
    .description('backend, threads, native add-on and versions')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const info = await initEngine(engineOpts(cmd));
      const out = { llmbox: packageVersion(), ...info };
      const native = info.native.enabled ? `on (${info.native.blas})` : `off (${info.native.reason ?? 'not available on this backend'})`;
      print(!!o.json, out, [
        `llmbox   ${out.llmbox}`,
        `backend  ${info.backend}`,
        `threads  ${info.threads}`,
        `native   ${native}`,
        `tfjs     ${info.versions.tfjs}`,
        `node     ${info.versions.node}`,
      ].join('\n'));
    });

  program
    .command('generate')
    .description('continue a prompt, or (--chat) reply to it as a chat model')
    .requiredOption('-m, --model <spec>', 'model folder (Hugging Face layout); with --chat also openai:MODEL, anthropic:MODEL or http://HOST:PORT/v1::MODEL')
    .requiredOption('-p, --prompt <text>', 'prompt text (with --chat: the user turn)')
    .option('--adapter <dir>', 'a PEFT LoRA adapter folder to apply to the model (a PEFT folder given as -m finds its base itself)')
    .option('--chat', "reply as the assistant under the chat template (local: the tokenizer's, --chat-template, else ChatML)")
    .option('--system-prompt <text>', '--chat: a system turn first')
    .option('--chat-template <t>', '--chat, local models: chatml, alpaca, plain or a Jinja file')
    .option('--stream', 'print the text as it is generated')
    .option('--api-key-env <NAME>', 'remote models: the environment variable holding the API key')
    .option('--max-new-tokens <n>', 'tokens to generate', int('--max-new-tokens'), 64)
    .option('--temperature <t>', '0 = greedy', float('--temperature', 0), 0)
    .option('--top-p <p>', 'nucleus sampling mass', float('--top-p', 0, 1))
    .option('--top-k <k>', 'sample among the k most likely', int('--top-k', 1))
    .option('--repetition-penalty <r>', 'penalise repeated tokens (> 1)', float('--repetition-penalty', 0, Infinity, { minExclusive: true }))
    .option('--seed <s>', 'sampling seed', int('--seed'))
    .option('--num-beams <n>', 'beam search with n beams (local models, greedy scores)', int('--num-beams', 1))
    .option('--length-penalty <x>', 'beam search: score / length^x (> 0 favours longer replies)', float('--length-penalty', -10, 10))
    .option('--stop <text...>', 'stop strings')
    .option('--json', 'print {"prompt_ids", "ids", "text"} (--chat: {"messages", "text", "finish_reason"})')
    .action(async (o, cmd: Command) => {
      const onText = o.stream && !o.json ? (t: string) => process.stdout.write(t) : undefined;
      if (o.chat) {
        const model = isRemoteSpec(o.model)
          ? remoteModel(o.model, { modelType: 'chat', apiKeyEnv: o.apiKeyEnv, systemPrompt: o.systemPrompt, requestCache: false })
          : new LocalLM(await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd)), { modelType: 'chat', chat: { template: chatTemplateOption(o.chatTemplate), systemPrompt: o.systemPrompt } });
        const messages = [{ role: 'user' as const, content: o.prompt as string }];
        const r = await model.chat(messages, { maxNewTokens: o.maxNewTokens, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed, stop: o.stop, onText });
        const all = [...(o.systemPrompt !== undefined ? [{ role: 'system', content: o.systemPrompt }] : []), ...messages, { role: 'assistant', content: r.text }];
        return print(!!o.json, { messages: all, text: r.text, finish_reason: r.finishReason }, onText ? '' : r.text);
      }
      if (isRemoteSpec(o.model)) throw new LlmboxError('remote models generate replies to chat turns here', { field: '--model', fix: 'add --chat, or evaluate with llmbox eval' });
      const lm = await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd));
      if (onText) process.stdout.write(o.prompt);
      const decode = {
        maxNewTokens: o.maxNewTokens,
        temperature: o.temperature,
        topP: o.topP,
        topK: o.topK,
        repetitionPenalty: o.repetitionPenalty,
        seed: o.seed,
        stop: o.stop,
        numBeams: o.numBeams,
        lengthPenalty: o.lengthPenalty,
      };
      if (onText && (o.numBeams ?? 1) > 1) throw new LlmboxError('beam search decides the reply at the end: it cannot stream', { field: '--stream', fix: 'drop --stream or --num-beams' });
      const r = onText ? await generateStream(lm, o.prompt, decode, onText) : generate(lm, [o.prompt], decode)[0];
      print(!!o.json, { prompt_ids: r.promptIds, ids: r.ids, text: r.text, finish_reason: r.finishReason, seed: r.seed }, onText ? '' : o.prompt + r.text);
    });

  program
    .command('logprobs')
    .description('log-probability of every next token under teacher forcing')
    .requiredOption('-m, --model <dir>', 'model folder (Hugging Face layout)')
    .option('--text <text>', 'text to score (tokenized with BOS)')
    .option('--adapter <dir>', 'a PEFT LoRA adapter folder to apply to the model (a PEFT folder given as -m finds its base itself)')
    .option('--ids <ids>', 'comma-separated token ids', idList)
    .option('--json', 'print {"ids", "logprobs"}')
    .action(async (o: { model: string; adapter?: string; text?: string; ids?: number[]; json?: boolean }, cmd: Command) => {
      if ((o.text === undefined) === (o.ids === undefined)) {
        throw new LlmboxError('give exactly one of --text and --ids', { field: '--text/--ids' });
      }
      const lm = await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd));
      let ids = o.ids;
      if (!ids) {
        if (!lm.tokenizer) throw new LlmboxError('--text needs a tokenizer', { file: `${o.model}/tokenizer.json`, fix: 'use --ids' });
        ids = lm.tokenizer.encode(o.text!);
      }
      const lp = nextTokenLogprobs(lm.model, ids);
      const lines = lp.map((x, i) => {
        const tok = lm.tokenizer?.idToToken(ids![i + 1]) ?? '';
        return `${String(ids![i + 1]).padStart(7)}  ${x.toFixed(6).padStart(11)}  ${JSON.stringify(tok)}`;
      });
      const total = lp.reduce((a, b) => a + b, 0);
      print(!!o.json, { ids, logprobs: lp }, ['     id      logprob  token', ...lines, `sum ${total.toFixed(6)}`].join('\n'));
    });

  program
    .command('eval')
    .description('evaluate a model on benchmark tasks (see `llmbox tasks`)')
    .requiredOption('-m, --model <spec>', 'model folder (Hugging Face layout), openai:MODEL, anthropic:MODEL or http://HOST:PORT/v1::MODEL[,URL::MODEL...]')
    .addOption(new Option('--endpoint <api>', 'remote models: completions (log-likelihoods via echo) or chat').choices(['completions', 'chat']))
    .option('--adapter <dir>', 'a PEFT LoRA adapter folder to apply to the model (a PEFT folder given as -m finds its base itself)')
    .option('--api-key-env <NAME>', 'remote models: the environment variable holding the API key (default OPENAI_API_KEY / ANTHROPIC_API_KEY for openai: / anthropic:)')
    .option('--concurrency <n>', 'remote models: requests in flight', int('--concurrency', 1), 4)
    .option('--max-retries <n>', 'remote models: retries on 429/5xx/connection errors (exponential backoff, Retry-After honoured)', int('--max-retries', 0), 5)
    .option('--timeout <s>', 'remote models: seconds per attempt', float('--timeout', 1), 300)
    .option('--no-request-cache', 'remote models: send every request, ignoring the response cache (LLMBOX_CACHE_DIR/requests)')
    .addOption(new Option('--model-type <type>', 'base: raw-text prompts; chat: few-shot examples as turns under a chat template (default: chat when the tokenizer has a template or the endpoint is chat)').choices(['base', 'chat']))
    .option('--chat-template <t>', 'local chat models: chatml, alpaca, plain or a Jinja file (default: the tokenizer chat template, else chatml)')
    .option('--system-prompt <text>', 'chat models: a system message before each prompt')
    .requiredOption('-d, --dataset <tasks>', 'comma-separated tasks, groups (mmlu, bbh, mgsm, flores200, truthfulqa) or task config files (*.json)')
    .option('--shots <n>', "few-shot examples (default: the task's)", int('--shots'))
    .option('--limit <n>', 'evaluate the first N instances of each task', int('--limit', 1))
    .option('--batch-size <n>', 'sequences per forward pass', int('--batch-size', 1), 8)
    .option('--method <m>', "ppl (option log-likelihood), prob (option letters) or gen (generation); default: the task's")
    .option('--no-prefix-cache', 'encode every request from scratch (for comparison)')
    .option('--samples <n>', 'generations per instance: majority vote, or pass@k for code', int('--samples', 1))
    .option('--temperature <t>', 'sampling temperature when --samples > 1', float('--temperature', 0, 2))
    .option('--max-new-tokens <n>', "cap on generated tokens (default: the task's)", int('--max-new-tokens', 1))
    .option('--data-dir <dir>', 'root of the data sets (default: ../shared/data)')
    .option('--seed <s>', 'seed for few-shot draws and sampling', int('--seed'), 1234)
    .option('--output <dir>', 'write results_<time>.json and samples_<task>_<time>.jsonl here; resume from here')
    .option('--no-resume', 'ignore resume state in --output and start over')
    .option('--chunk-size <n>', 'instances per model call and per resume checkpoint', int('--chunk-size', 1), 32)
    .option('--allow-unsafe-code-execution', 'run generated code (HumanEval, MBPP) even where no isolating sandbox (bubblewrap) can be made; results say so')
    .option('--shard <i/n>', 'evaluate only instances i, i+n, i+2n, ... of each task (0 <= i < n); join the outputs with `llmbox merge`', shardSpec)
    .option('--json', 'print {"results": {task: {metric: value}}, "groups": {...}}')
    .action(async (o, cmd: Command) => {
      if (o.allowUnsafeCodeExecution) process.env.LLMBOX_ALLOW_UNSAFE_CODE = '1';
      if (o.output) prepareOutputDir(o.output, '--output');
      if (o.shard && !o.output) throw new LlmboxError('--shard needs --output (the folder llmbox merge reads)', { field: '--shard', fix: 'add --output DIR' });
      if (o.method !== undefined && !['ppl', 'prob', 'gen', 'rolling'].includes(o.method)) {
        throw new LlmboxError(`unknown method ${o.method}`, { field: '--method', fix: 'use ppl, prob, gen or rolling' });
      }
      // Configs are read once here (failing before the model loads); evaluate gets their task names.
      const names = await registerConfigs((o.dataset as string).split(',').map((s) => s.trim()).filter(Boolean));
      if (!names.length) throw new LlmboxError('no tasks given', { field: '--dataset', fix: 'name tasks or groups, e.g. -d arc_easy,hellaswag (see `llmbox tasks`)' });
      expandTasks(names);
      const chat = { template: chatTemplateOption(o.chatTemplate), systemPrompt: o.systemPrompt };
      const model = isRemoteSpec(o.model)
        ? remoteModel(o.model, { endpoint: o.endpoint, modelType: o.modelType, apiKeyEnv: o.apiKeyEnv, concurrency: o.concurrency, maxRetries: o.maxRetries, timeoutSeconds: o.timeout, requestCache: o.requestCache === false ? false : undefined, systemPrompt: o.systemPrompt })
        : new LocalLM(await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd)), { batchSize: o.batchSize, prefixCache: o.prefixCache, modelType: o.modelType, chat });
      const run = await evaluate(model, names, {
        shots: o.shots, limit: o.limit, dataDir: o.dataDir, seed: o.seed, method: o.method as Method | undefined,
        samples: o.samples, temperature: o.temperature, maxNewTokens: o.maxNewTokens, outputDir: o.output,
        resume: o.resume, chunkSize: o.chunkSize, model: o.model, shard: o.shard, onProgress: progressPrinter(),
      });
      if (!(model instanceof LocalLM)) {
        const st = model.stats;
        process.stderr.write(`requests: ${st.requests} (${st.cached} from the cache, ${st.attempts} HTTP attempts, ${st.retries} retries)\n`);
      }
      printRun(run, !!o.json, model instanceof LocalLM ? {} : { requests: model.stats });
    });

  program
    .command('merge')
    .description('join the outputs of a run split with --shard i/n into one run (metrics recomputed from the samples)')
    .argument('<dirs...>', 'the --output folders of the shards')
    .requiredOption('--output <dir>', 'where the merged results and samples go')
    .option('--json', 'print the summary as llmbox eval --json does')
    .action((dirs: string[], o: { output: string; json?: boolean }) => {
      prepareOutputDir(o.output, '--output');
      const run = mergeRuns(dirs);
      run.files = writeRun(o.output, run, { started: Date.now(), limit: run.fingerprint.limit, batchSize: run.fingerprint.lm.batch_size ?? null });
      printRun(run, !!o.json);
    });

  program
    .command('tasks')
    .description('list the evaluation tasks and groups')
    .option('--json', 'print [{"name", "methods", "shots", "group"}]')
    .action((o: { json?: boolean }) => {
      const groupOf = (t: string) => Object.values(GROUPS).find((g) => g.tasks.includes(t))?.name ?? null;
      const list = Object.values(TASKS).map((t) => ({ name: t.name, methods: t.methods, default_method: t.defaultMethod, shots: t.defaultShots, group: groupOf(t.name) }));
      print(!!o.json, list, list.map((t) => `${t.name.padEnd(48)} ${t.methods.join('/').padEnd(9)} ${String(t.shots).padStart(2)}-shot  ${t.group ?? ''}`).join('\n'));
    });

  program
    .command('train')
    .description('pre-train (pt) or instruction-tune (sft) a model, fully or with LoRA; checkpoints in Hugging Face layout')
    .requiredOption('-m, --model <dir>', 'model folder (or a shipped model name)')
    .requiredOption('--dataset <files...>', 'data files (json, jsonl, csv, tsv, parquet, arrow, txt) or dataset_info.json names')
    .option('--dataset-dir <dir>', 'folder with a dataset_info.json (LLaMA-Factory) for dataset names')
    .option('--dataset_ratio <r...>', 'mix the datasets by these shares (LLMBox semantics)')
    .option('--mix <strategy>', 'ratio, concat or interleave', oneOf('--mix', ['ratio', 'concat', 'interleave']))
    .option('--mix-total <n>', 'examples in a ratio mixture (default: all)', int('--mix-total', 1))
    .option('--stage <stage>', 'pt (concatenate and chunk) or sft (assistant turns are the targets)', 'sft')
    .option('--template <name>', 'alpaca, chatml or plain (default: the tokenizer chat template, else alpaca)', oneOf('--template', ['alpaca', 'chatml', 'plain']))
    .option('--train-on-prompt', 'learn prompt tokens too')
    .option('--no-cache', 'tokenize again instead of reusing the tokenized cache (LLMBOX_CACHE_DIR, default ~/.cache/llmbox)')
    .option('--packing', 'bin-pack sft examples into full rows (attention stays within each example)')
    .option('--max-length <t>', 'tokens per row', int('--max-length', 2))
    .option('--batch-size <b>', 'rows per micro-batch', int('--batch-size', 1), 8)
    .option('--grad-accum <k>', 'micro-batches per optimizer step', int('--grad-accum', 1), 1)
    .option('--max-steps <n>', 'optimizer steps (default: one epoch)', int('--max-steps', 1))
    .option('--epochs <e>', 'passes over the data when --max-steps is not given', float('--epochs', 0.001), 1)
    .option('--lr <x>', 'peak learning rate', float('--lr', 0), 1e-4)
    .option('--schedule <s>', 'cosine, linear or constant', 'cosine')
    .option('--warmup <w>', 'warmup steps, or a fraction of the steps when < 1', float('--warmup', 0), 0)
    .option('--weight-decay <x>', 'AdamW decoupled weight decay', float('--weight-decay', 0), 0)
    .option('--max-grad-norm <x>', 'clip gradients to this global norm (0: off)', float('--max-grad-norm', 0), 1)
    .option('--lora-rank <r>', 'train LoRA adapters of this rank instead of all weights', int('--lora-rank', 1))
    .option('--lora-alpha <a>', 'LoRA alpha (default 2 x rank)', float('--lora-alpha', 0))
    .option('--lora-dropout <p>', 'LoRA dropout', float('--lora-dropout', 0, 0.99), 0)
    .option('--lora-targets <names>', 'comma-separated: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj or all-linear', 'q_proj,v_proj')
    .option('--qlora', 'QLoRA: hold the frozen base as 4-bit NF4 (double-quantized) under the LoRA adapters')
    .option('--val-size <n>', 'held out for evaluation loss: a fraction (< 1) or a count', float('--val-size', 0))
    .option('--eval-every <n>', 'evaluation loss every N steps (and at the end)', int('--eval-every', 0), 0)
    .option('--save-every <n>', 'checkpoint every N steps (and at the end)', int('--save-every', 0), 0)
    .option('--seed <n>', 'data order, mixture and initialisation seed', int('--seed', 0), 42)
    .requiredOption('--output <dir>', 'where checkpoints and the final model go')
    .option('--resume', 'continue from the newest checkpoint in --output')
    .addOption(new Option('--export-for <trainer>', 'train nothing here: write the mixed, tokenized (packed) data as Parquet with a config and launch.sh for this GPU trainer into --output').choices(['llamafactory', 'trl']))
    .option('--export-gpu-gib <g>', '--export-for: memory of one cluster GPU, GiB (sizes the GPU count and ZeRO stage)', float('--export-gpu-gib', 1), 80)
    .option('--json', 'print {"steps", "losses", "eval_loss", "checkpoint", ...} at the end')
    .action(async (o, cmd: Command) => {
      if (!['pt', 'sft'].includes(o.stage)) throw new LlmboxError(`unknown stage ${o.stage}`, { field: '--stage', fix: 'use pt or sft' });
      if (!['cosine', 'linear', 'constant'].includes(o.schedule)) throw new LlmboxError(`unknown schedule ${o.schedule}`, { field: '--schedule', fix: 'use cosine, linear or constant' });
      prepareOutputDir(o.output, '--output');
      const ratio = o.dataset_ratio?.map((r: string) => Number(r));
      if (ratio && ratio.some((r: number) => !Number.isFinite(r))) throw new LlmboxError(`--dataset_ratio takes numbers, got ${o.dataset_ratio.join(' ')}`, { field: '--dataset_ratio' });
      const lm = await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd));
      const bar = trainProgress();
      const opts = {
        datasets: o.dataset, dataDir: o.datasetDir, datasetRatio: ratio, mixStrategy: o.mix, mixTotal: o.mixTotal, stage: o.stage, template: o.template, trainOnPrompt: !!o.trainOnPrompt,
        packing: !!o.packing, maxLength: o.maxLength, batchSize: o.batchSize, gradAccum: o.gradAccum, maxSteps: o.maxSteps, epochs: o.epochs, lr: o.lr, schedule: o.schedule,
        warmup: o.warmup, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm, valSize: o.valSize, evalEvery: o.evalEvery, saveEvery: o.saveEvery, seed: o.seed,
        lora: o.loraRank ? { rank: o.loraRank, alpha: o.loraAlpha, dropout: o.loraDropout, targets: String(o.loraTargets).split(',').map((x) => x.trim()) } : undefined,
        qlora: !!o.qlora, cache: o.cache, output: o.output as string, resume: !!o.resume, onStep: bar.step, onEval: bar.eval,
      };
      if (o.exportFor) {
        const x = await exportTraining(lm, opts, { target: o.exportFor, gpuGib: o.exportGpuGib });
        const summary = { export: o.exportFor, dir: x.dir, files: x.files, rows: x.rows, gpus: x.plan.gpus, zero_stage: x.plan.zeroStage, per_gpu_gib: x.plan.perGpuGib, command: x.command };
        return print(!!o.json, summary, `wrote ${x.rows.train} training rows (${x.rows.validation} held out) and a ${o.exportFor} config to ${x.dir}\n${x.plan.gpus} GPU(s)${x.plan.zeroStage ? ', DeepSpeed ZeRO-3' : ''}, about ${x.plan.perGpuGib.toFixed(1)} GiB each; run: ${join(x.dir, 'launch.sh')}`);
      }
      const r = await train(lm, opts);
      const summary = {
        steps: r.steps, losses: r.losses, eval_loss: r.evalLoss, eval_losses: r.evalLosses, checkpoint: r.checkpoint, output: o.output, resumed_from: r.resumedFrom,
        stage: r.stage, parameters: r.parameters, data: r.data, quantization: r.quantization,
        tokens_per_second: r.metrics.length ? r.metrics.reduce((a, m) => a + m.tokens, 0) / r.metrics.reduce((a, m) => a + m.seconds, 0) : null,
      };
      const text = [
        `trained ${r.steps} steps (${r.stage}${o.loraRank ? `, LoRA r=${o.loraRank}` : ''}; ${r.parameters.trainable.toLocaleString('en-US')} of ${r.parameters.total.toLocaleString('en-US')} parameters trainable)`,
        `loss ${r.losses[0]?.toFixed(4)} -> ${r.losses.at(-1)?.toFixed(4)}${r.evalLoss !== null ? `, eval loss ${r.evalLosses[0]?.loss.toFixed(4)} -> ${r.evalLoss.toFixed(4)}` : ''}`,
        `data: ${r.data.sources.map((s) => `${s.name}: ${s.mixed} (${(100 * s.proportion).toFixed(1)}%)`).join(', ')}; ${r.data.trainRows} rows, ${(100 * r.data.utilisation).toFixed(1)}% of row tokens hold data`,
        ...(r.quantization ? [`QLoRA base: ${(r.quantization.float32Bytes / 2 ** 20).toFixed(2)} MiB float32 -> ${(r.quantization.nf4Bytes / 2 ** 20).toFixed(2)} MiB NF4 (${(r.quantization.float32Bytes / r.quantization.nf4Bytes).toFixed(2)}x smaller)`] : []),
        `saved to ${o.output} (checkpoint ${r.checkpoint})`,
      ].join('\n');
      print(!!o.json, summary, text);
    });

  program
    .command('merge-tokenizer')
    .description('learn new BPE tokens from a corpus, add them to the tokenizer and resize the embeddings (continual pre-training)')
    .requiredOption('-m, --model <dir>', 'model folder (or a shipped model name)')
    .requiredOption('--input <files...>', 'corpus text files (one document or paragraph per line)')
    .requiredOption('--vocab <n>', 'how many tokens to add', int('--vocab', 1))
    .requiredOption('--output <dir>', 'where the expanded model goes')
    .option('--json', 'print {"added": [...], "old_vocab", "new_vocab", "tokens_before", "tokens_after"}')
    .action(async (o: { model: string; input: string[]; vocab: number; output: string; json?: boolean }, cmd: Command) => {
      const lm = await loadModelOrAdapter(o.model, undefined, engineOpts(cmd));
      const r = mergeTokenizer(lm, o.input, o.vocab, o.output);
      const summary = { added: r.added, old_vocab: r.oldVocab, new_vocab: r.newVocab, tokens_before: r.tokensBefore, tokens_after: r.tokensAfter, output: o.output };
      const text = `added ${r.added.length} tokens (${r.oldVocab} -> ${r.newVocab}); the corpus takes ${r.tokensAfter.toLocaleString('en-US')} tokens instead of ${r.tokensBefore.toLocaleString('en-US')} (${((100 * (r.tokensBefore - r.tokensAfter)) / r.tokensBefore).toFixed(1)}% fewer)\nfirst new tokens: ${r.added.slice(0, 12).map((a) => JSON.stringify(a.token)).join(' ')}\nsaved to ${o.output}`;
      print(!!o.json, summary, text);
    });

  program
    .command('serve')
    .description('an OpenAI-compatible HTTP server over the in-process engine (/v1/models, /v1/completions, /v1/chat/completions)')
    .requiredOption('-m, --model <dir>', 'model folder (or a shipped model name)')
    .option('--host <host>', 'address to listen on (default 127.0.0.1: this machine only)', '127.0.0.1')
    .option('--adapter <dir>', 'a PEFT LoRA adapter folder to apply to the model (a PEFT folder given as -m finds its base itself)')
    .option('--port <n>', 'port (0: any free port)', int('--port', 0), 8000)
    .option('--model-name <name>', 'the model id clients send (default: the folder name)')
    .option('--api-key-env <NAME>', 'require the API key held in this environment variable')
    .option('--api-key <key>', 'require this API key (visible to other users in the process list: prefer --api-key-env)')
    .option('--chat-template <t>', 'chat prompts: chatml, alpaca, plain or a Jinja file (default: the tokenizer chat template, else chatml)')
    .option('--batch-size <n>', 'requests per forward pass', int('--batch-size', 1), 8)
    .option('--max-tokens <n>', 'largest max_tokens a request may ask for (default: the context window)', int('--max-tokens', 1))
    .option('--max-body-bytes <n>', 'largest request body', int('--max-body-bytes', 1024), 4 * 2 ** 20)
    .option('--quiet', 'no line per request on stderr')
    .action(async (o, cmd: Command) => {
      const apiKey = o.apiKeyEnv !== undefined ? envSecret(o.apiKeyEnv, '--api-key-env') : o.apiKey;
      const chatTemplate = chatTemplateOption(o.chatTemplate);
      const lm = await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd));
      const { serve } = await import('../serve/server.js');
      const server = await serve(lm, {
        host: o.host, port: o.port, modelName: o.modelName, apiKey, chatTemplate, batchSize: o.batchSize, maxTokens: o.maxTokens, maxBodyBytes: o.maxBodyBytes,
        log: o.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
      });
      process.stderr.write(`llmbox serve: ${o.modelName ?? basename(lm.dir)} at ${server.url}${apiKey ? ' (API key required)' : ''}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => void server.close().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });

  const kernel = program.command('kernel').description('the llmbox Jupyter kernel (tslab with llm preloaded)');
  kernel
    .command('install')
    .description('write the "llmbox" kernelspec so JupyterLab, Notebook, nbconvert and VS Code offer the kernel')
    .option('--user', 'install for this user (default unless root)')
    .option('--prefix <dir>', 'install under DIR/share/jupyter/kernels (a virtualenv, conda env or CI tree)')
    .option('--name <name>', 'kernelspec name', 'llmbox')
    .option('--json', 'print {"dir": ..., "argv": [...]}')
    .action((o: { user?: boolean; prefix?: string; name: string; json?: boolean }) => {
      const dir = installKernel({ user: o.user, prefix: o.prefix, name: o.name });
      print(!!o.json, { dir, ...kernelSpec() }, `installed kernelspec ${o.name} in ${dir}\nstart it with: jupyter lab  (then pick "llmbox (TypeScript)")`);
    });
  kernel
    .command('start')
    .description('start the kernel (Jupyter runs this from the kernelspec)')
    .requiredOption('--config-path <file>', 'the connection file Jupyter passes')
    .action(async (o: { configPath: string }) => {
      if (!existsSync(o.configPath)) throw new LlmboxError('connection file not found', { file: o.configPath, field: '--config-path', fix: 'Jupyter passes this file; start the kernel from Jupyter (after llmbox kernel install)' });
      const { startKernel } = await import('../kernel/start.js');
      await startKernel(o.configPath);
    });

  program
    .command('gpu-calc')
    .description('GPU memory for training (LLMBox paper Eq. 1 and related settings), or the minimum-GPU table')
    .option('-m, --model <dir>', "read parameters, layers, hidden size and vocabulary from the model's config.json")
    .option('--params <p>', 'parameters', float('--params', 0, Infinity, { minExclusive: true }))
    .option('--layers <l>', 'layers', int('--layers', 1))
    .option('--seq <s>', 'sequence length', int('--seq', 1), 2048)
    .option('--hidden <h>', 'hidden size', int('--hidden', 1))
    .option('--vocab <v>', 'vocabulary size', int('--vocab', 1))
    .option('--gpus <n>', 'GPUs', int('--gpus', 1), 1)
    .option('--batch <b>', 'sequences per GPU', int('--batch', 1), 1)
    .option('--setting <s>', 'zero3 (Eq. 1), ddp, lora or qlora', 'zero3')
    .option('--table', 'minimum GPUs for LLaMA-2 7B/13B/70B per setting on A100 80G and A6000 48G')
    .option('--json', 'print {"per_gpu_gib": x, ...}')
    .action((o) => {
      if (!['zero3', 'ddp', 'lora', 'qlora'].includes(o.setting)) throw new LlmboxError(`unknown setting ${o.setting}`, { field: '--setting', fix: 'use zero3, ddp, lora or qlora' });
      const note = 'llmbox itself trains in float32 (tfjs): its weights take 4 bytes and activations twice the bf16 terms, so these figures are for bf16 trainers on GPUs.';
      if (o.table) {
        const rows: { model: string; setting: string; gpu: string; gpus: number | null; per_gpu_gib: number | null }[] = [];
        for (const [model, m] of Object.entries(LLAMA2)) {
          for (const setting of ['ddp', 'zero3', 'lora', 'qlora'] as GpuSetting[]) {
            for (const [gpu, gib] of Object.entries(GPUS)) {
              const r = minimumGpus({ ...m, seq: o.seq, batch: o.batch, setting }, gib);
              rows.push({ model: `LLaMA-2 ${model}`, setting, gpu, gpus: r?.gpus ?? null, per_gpu_gib: r ? Number(r.gib.toFixed(2)) : null });
            }
          }
        }
        const text = [
          `minimum GPUs (sequence ${o.seq}, batch ${o.batch} per GPU, fits in 95% of memory, GiB)`,
          'model          setting  gpu         gpus  per-GPU GiB',
          ...rows.map((r) => `${r.model.padEnd(14)} ${r.setting.padEnd(8)} ${r.gpu.padEnd(11)} ${String(r.gpus ?? '-').padStart(4)}  ${r.per_gpu_gib === null ? 'does not fit' : r.per_gpu_gib.toFixed(2)}`),
          ...Object.entries(SETTING_ASSUMPTIONS).map(([k, v]) => `${k}: ${v}`),
          note,
        ].join('\n');
        return print(!!o.json, { rows, assumptions: SETTING_ASSUMPTIONS, note }, text);
      }
      let { params, layers, hidden, vocab } = o as { params?: number; layers?: number; hidden?: number; vocab?: number };
      if (o.model) {
        const cfg = readConfig(o.model);
        params = [...parameterShapes(cfg).values()].reduce((a, shape) => a + shape.reduce((x, y) => x * y, 1), 0);
        layers = cfg.numLayers;
        hidden = cfg.hiddenSize;
        vocab = cfg.vocabSize;
      }
      const r = gpuMemory({ params: params!, layers: layers!, seq: o.seq, hidden: hidden!, vocab: vocab!, gpus: o.gpus, batch: o.batch, setting: o.setting });
      const out = { per_gpu_gib: r.gib, per_gpu_bytes: r.bytes, model_states_gib: r.parts.states / 2 ** 30, activations_gib: r.parts.activations / 2 ** 30, params, trainable_params: r.trainable, setting: o.setting, assumptions: r.assumptions, note };
      print(!!o.json, out, `per GPU: ${r.gib.toFixed(2)} GiB (model states ${out.model_states_gib.toFixed(2)}, activations ${out.activations_gib.toFixed(2)})\n${r.assumptions}\n${note}`);
    });

  return program;
}

/** The summary of an evaluation: stable JSON, or an aligned table. */
function printRun(run: EvalRun, json: boolean, extra: Record<string, unknown> = {}): void {
  const flat = (m: Record<string, MetricValue>) => Object.fromEntries(Object.entries(m).flatMap(([k, v]) => [[k, v.value], [`${k}_stderr`, v.stderr]]));
  const summary = {
    results: Object.fromEntries(run.results.map((r) => [r.task, { ...flat(r.metrics), n: r.n, shots: r.shots, method: r.method, ...(r.truncated ? { truncated_prompts: r.truncated } : {}) }])),
    groups: Object.fromEntries(run.groups.map((g) => [g.group, { ...flat(g.metrics), n: g.n }])),
    fingerprint: run.fingerprint,
    files: run.files ?? null,
    ...extra,
  };
  const rows = [
    ...run.results.flatMap((r) => Object.entries(r.metrics).map(([m, v]) => [r.task, r.method, String(r.shots), m, v, String(r.n)] as const)),
    ...run.groups.flatMap((g) => Object.entries(g.metrics).map(([m, v]) => [g.group, g.aggregate, '', m, v, String(g.n)] as const)),
  ];
  const text = [
    'task                            method  shots  metric                        value     stderr      n',
    ...rows.map(([t, meth, shots, m, v, n]) => `${t.padEnd(31)} ${meth.padEnd(7)} ${shots.padStart(5)}  ${m.padEnd(26)} ${v.value.toFixed(4).padStart(9)} ${(Number.isFinite(v.stderr) ? v.stderr.toFixed(4) : 'n/a').padStart(10)} ${n.padStart(6)}`),
    ...(run.files ? [`results: ${run.files.results}`] : []),
  ].join('\n');
  print(json, summary, text);
}

/** `i/n` with 0 <= i < n. */
function shardSpec(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  const index = Number(m?.[1]), count = Number(m?.[2]);
  if (!m || count < 1 || index >= count) throw new InvalidArgumentError('--shard takes i/n with 0 <= i < n, e.g. 0/4');
  return { index, count };
}

/** A status line on stderr: redrawn in place on a terminal; elsewhere a line every 10 s and the last one. */
function statusLine(): { update(line: () => string, final: boolean): void; tty: boolean } {
  const tty = !!process.stderr.isTTY;
  let last = 0;
  return {
    tty,
    update(line, final) {
      const now = Date.now();
      if (!tty && !final && now - last < 10_000) return;
      last = now;
      process.stderr.write(tty ? `\r\x1b[K${line()}${final ? '\n' : ''}` : `${line()}\n`);
    },
  };
}

/** Step, loss, learning rate and tokens/s as a progress bar on stderr; evaluation losses as lines. */
function trainProgress(): { step: (m: StepMetrics, total: number) => void; eval: (e: { step: number; loss: number }) => void } {
  const status = statusLine();
  return {
    step: (m, total) =>
      status.update(() => {
        const width = 24, filled = Math.round((width * m.step) / total);
        return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] step ${m.step}/${total} loss ${m.loss.toFixed(4)} lr ${m.lr.toExponential(2)} |g| ${m.gradNorm.toFixed(2)} ${Math.round(m.tokensPerSecond)} tok/s`;
      }, m.step === total),
    eval: (e) => process.stderr.write(`${status.tty ? '\r\x1b[K' : ''}eval loss at step ${e.step}: ${e.loss.toFixed(4)}\n`),
  };
}

/** Instances/s and ETA on stderr. */
function progressPrinter(): (p: Progress) => void {
  const status = statusLine();
  return (p) =>
    status.update(() => {
      const eta = Number.isFinite(p.etaSeconds) ? `${Math.floor(p.etaSeconds / 60)}m${String(Math.round(p.etaSeconds % 60)).padStart(2, '0')}s` : '?';
      return `${p.task}: ${p.done}/${p.total} instances, ${p.rate.toFixed(1)}/s, ETA ${eta}`;
    }, p.done === p.total);
}

/**
 * Exit codes: 0 done (and --help, --version), 2 the user's input is wrong (a bad flag, file or
 * config: the message names it and the fix), 1 anything else (the stack only with LLMBOX_DEBUG=1).
 */
export async function main(argv = process.argv): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has printed its message already.
      process.exitCode = e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2;
    } else if (e instanceof LlmboxError) {
      process.stderr.write(`llmbox: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      const err = e as Error;
      process.stderr.write(`llmbox: ${process.env.LLMBOX_DEBUG === '1' ? (err.stack ?? err) : (err.message ?? err)}\n`);
      process.exitCode = 1;
    }
  }
}
