import { Command, Option } from 'commander';
import { LlmboxError } from '../../errors.js';
import { prepareOutputDir } from '../../util/fs.js';
import { loadModelOrAdapter } from '../../train/adapted.js';
import { evaluate, expandTasks, registerConfigs } from '../../eval/evaluate.js';
import { LocalLM } from '../../eval/local.js';
import { isRemoteSpec, remoteModel } from '../../eval/remote/index.js';
import { TASKS, type Method } from '../../eval/tasks/index.js';
import { ICL_STRATEGIES, type IclOptions } from '../../eval/icl/index.js';
import { COT_MODES, withCot } from '../../eval/cot/index.js';
import type { LanguageModel } from '../../eval/lm.js';
import type { RequestStats } from '../../eval/remote/transport.js';
import { chatTemplateOption, engineOpts, float, int, positiveList, shardSpec } from '../options.js';
import { progressPrinter } from '../progress.js';
import { printRun } from '../summary.js';
import { DEFAULTS } from '../../util/defaults.js';

export function evalCommand(program: Command): void {
  program
    .command('eval')
    .description('evaluate a model on benchmark tasks (see `llmbox tasks`)')
    .requiredOption(
      '-m, --model <spec>',
      'model folder (Hugging Face layout), openai:MODEL, anthropic:MODEL or http://HOST:PORT/v1::MODEL[,URL::MODEL...]',
    )
    .addOption(
      new Option('--endpoint <api>', 'remote models: completions (log-likelihoods via echo) or chat').choices([
        'completions',
        'chat',
      ]),
    )
    .option(
      '--adapter <dir>',
      'a PEFT LoRA adapter folder to apply to the model (a PEFT folder given as -m finds its base itself)',
    )
    .option(
      '--api-key-env <NAME>',
      'remote models: the environment variable holding the API key (default OPENAI_API_KEY / ANTHROPIC_API_KEY for openai: / anthropic:)',
    )
    .option(
      '--concurrency <n>',
      'remote models: requests in flight',
      int('--concurrency', 1),
      DEFAULTS.remote.concurrency,
    )
    .option(
      '--max-retries <n>',
      'remote models: retries on 429/5xx/connection errors (exponential backoff, Retry-After honoured)',
      int('--max-retries', 0),
      DEFAULTS.remote.maxRetries,
    )
    .option(
      '--timeout <s>',
      'remote models: seconds per attempt',
      float('--timeout', 1),
      DEFAULTS.remote.timeoutSeconds,
    )
    .option(
      '--no-request-cache',
      'remote models: send every request, ignoring the response cache (LLMBOX_CACHE_DIR/requests)',
    )
    .addOption(
      new Option(
        '--model-type <type>',
        'base: raw-text prompts; chat: few-shot examples as turns under a chat template (default: chat when the tokenizer has a template or the endpoint is chat)',
      ).choices(['base', 'chat']),
    )
    .option(
      '--chat-template <t>',
      'local chat models: chatml, alpaca, plain or a Jinja file (default: the tokenizer chat template, else chatml)',
    )
    .option('--system-prompt <text>', 'chat models: a system message before each prompt')
    .requiredOption(
      '-d, --dataset <tasks>',
      'comma-separated tasks, groups (mmlu, bbh, mgsm, agieval, xcopa, ...), task config files (*.yaml, *.json) or folders of them',
    )
    .option('--shots <n>', "few-shot examples (default: the task's)", int('--shots'))
    .option('--limit <n>', 'evaluate the first N instances of each task', int('--limit', 1))
    .option('--batch-size <n>', 'sequences per forward pass', int('--batch-size', 1), DEFAULTS.eval.batchSize)
    .addOption(
      new Option(
        '--method <m>',
        "ppl (option log-likelihood), prob (option letters), gen (generation) or rolling (perplexity); default: the task's",
      ).choices(['ppl', 'prob', 'gen', 'rolling']),
    )
    .option('--no-prefix-cache', 'encode every request from scratch (for comparison)')
    .option('--samples <n>', 'generations per instance: majority vote, or pass@k for code', int('--samples', 1))
    .option(
      '--pass-k <list>',
      'code tasks with --samples N: the k of pass@k, each at most N (default 1,5,10,100)',
      positiveList('--pass-k'),
    )
    .option('--temperature <t>', 'sampling temperature when --samples > 1', float('--temperature', 0, 2))
    .option('--max-new-tokens <n>', "cap on generated tokens (default: the task's)", int('--max-new-tokens', 1))
    .option('--data-dir <dir>', 'root of the data sets (default: ../shared/data)')
    .option('--seed <s>', 'seed for few-shot draws and sampling', int('--seed'), DEFAULTS.eval.seed)
    .option('--output <dir>', 'write results_<time>.json and samples_<task>_<time>.jsonl here; resume from here')
    .option('--no-resume', 'ignore resume state in --output and start over')
    .option(
      '--chunk-size <n>',
      'instances per model call and per resume checkpoint',
      int('--chunk-size', 1),
      DEFAULTS.eval.chunkSize,
    )
    .option(
      '--allow-unsafe-code-execution',
      'run generated code (HumanEval, MBPP) even where no isolating sandbox (bubblewrap) can be made; results say so',
    )
    .option(
      '--shard <i/n>',
      'evaluate only instances i, i+n, i+2n, ... of each task (0 <= i < n); join the outputs with `llmbox merge`',
      shardSpec,
    )
    .addOption(
      new Option(
        '--icl <strategy>',
        "few-shot example selection: random, first, kate (nearest by embedding), globale (ordering by label entropy), ape (a proposed instruction); default: the task's",
      ).choices([...ICL_STRATEGIES]),
    )
    .addOption(
      new Option(
        '--kate-order <order>',
        `KATE: where the nearest example goes (default ${DEFAULTS.icl.kateOrder})`,
      ).choices(['nearest-last', 'nearest-first']),
    )
    .addOption(
      new Option(
        '--cot <mode>',
        "chain of thought where the task offers it (`llmbox tasks`): none, base, least-to-most or pal; default: the task's",
      ).choices([...COT_MODES]),
    )
    .option(
      '--judge <spec>',
      'LLM-as-judge tasks (mt_bench, vicuna_bench, mt_bench_pairwise): the judge, a model folder or a server (http://HOST:PORT/v1::MODEL, openai:MODEL, anthropic:MODEL)',
    )
    .option('--embed-model <dir>', 'KATE: a local model folder whose hidden states are compared (default: the model)')
    .option('--ape-model <spec>', 'APE: the model proposing instructions, local or remote (default: the model)')
    .option('--icl-probes <n>', `GlobalE: probe instances (default ${DEFAULTS.icl.probes})`, int('--icl-probes', 1))
    .option(
      '--icl-orderings <n>',
      `GlobalE: orderings tried at most (default ${DEFAULTS.icl.orderings})`,
      int('--icl-orderings', 1),
    )
    .option(
      '--ape-candidates <n>',
      `APE: instructions proposed (default ${DEFAULTS.icl.candidates})`,
      int('--ape-candidates', 1),
    )
    .option('--ape-dev <n>', `APE: dev instances scoring them (default ${DEFAULTS.icl.dev})`, int('--ape-dev', 1))
    .option('--no-icl-cache', 'select examples again instead of reusing the selection cache (LLMBOX_CACHE_DIR/icl)')
    .option('--json', 'print {"results": {task: {metric: value}}, "groups": {...}}')
    .action(async (o, cmd: Command) => {
      if (o.allowUnsafeCodeExecution) process.env.LLMBOX_ALLOW_UNSAFE_CODE = '1';
      if (o.output) prepareOutputDir(o.output, '--output');
      if (o.shard && !o.output)
        throw new LlmboxError('--shard needs --output (the folder llmbox merge reads)', {
          field: '--shard',
          fix: 'add --output DIR',
        });
      // Configs are read once here (failing before the model loads); evaluate gets their task names.
      const names = await registerConfigs(
        (o.dataset as string)
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      );
      if (!names.length)
        throw new LlmboxError('no tasks given', {
          field: '--dataset',
          fix: 'name tasks or groups, e.g. -d arc_easy,hellaswag (see `llmbox tasks`)',
        });
      // Unknown tasks and CoT modes they lack fail here, before the model loads.
      for (const t of expandTasks(names)) withCot(TASKS[t], o.cot);
      const chat = { template: chatTemplateOption(o.chatTemplate), systemPrompt: o.systemPrompt };
      const modelOf = async (spec: string, adapter?: string): Promise<LanguageModel & { stats?: RequestStats }> =>
        isRemoteSpec(spec)
          ? remoteModel(spec, {
              endpoint: o.endpoint,
              modelType: o.modelType,
              apiKeyEnv: o.apiKeyEnv,
              concurrency: o.concurrency,
              maxRetries: o.maxRetries,
              timeoutSeconds: o.timeout,
              requestCache: o.requestCache === false ? false : undefined,
              systemPrompt: o.systemPrompt,
            })
          : new LocalLM(await loadModelOrAdapter(spec, adapter, engineOpts(cmd)), {
              batchSize: o.batchSize,
              prefixCache: o.prefixCache,
              modelType: o.modelType,
              chat,
            });
      const model = await modelOf(o.model, o.adapter);
      if (o.embedModel && isRemoteSpec(o.embedModel))
        throw new LlmboxError('--embed-model must be a local model folder (its hidden states are compared)', {
          field: '--embed-model',
          fix: 'give a model folder, or leave the flag out to use the evaluated model',
        });
      const icl: IclOptions | undefined = o.icl
        ? {
            strategy: o.icl,
            kateOrder: o.kateOrder,
            embedder: o.embedModel ? await modelOf(o.embedModel) : undefined,
            proposer: o.apeModel ? await modelOf(o.apeModel) : undefined,
            probes: o.iclProbes,
            orderings: o.iclOrderings,
            candidates: o.apeCandidates,
            dev: o.apeDev,
            cache: o.iclCache === false ? false : undefined,
          }
        : undefined;
      const run = await evaluate(model, names, {
        shots: o.shots,
        limit: o.limit,
        dataDir: o.dataDir,
        seed: o.seed,
        method: o.method as Method | undefined,
        samples: o.samples,
        passK: o.passK,
        temperature: o.temperature,
        maxNewTokens: o.maxNewTokens,
        outputDir: o.output,
        resume: o.resume,
        chunkSize: o.chunkSize,
        model: o.model,
        shard: o.shard,
        icl,
        cot: o.cot,
        judge: o.judge ? await modelOf(o.judge) : undefined,
        onProgress: progressPrinter(),
      });
      const st = model.stats;
      if (st) {
        process.stderr.write(
          `requests: ${st.requests} (${st.cached} from the cache, ${st.attempts} HTTP attempts, ${st.retries} retries)\n`,
        );
      }
      printRun(run, !!o.json, st ? { requests: st } : {});
    });
}
