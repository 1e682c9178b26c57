import { Command, Option } from 'commander';
import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { prepareOutputDir } from '../../util/fs.js';
import { loadModelOrAdapter } from '../../train/adapted.js';
import { exportTraining } from '../../train/export.js';
import { train } from '../../train/trainer.js';
import { trainPreference, type PreferenceResult } from '../../train/preference.js';
import { PREFERENCE_LOSSES } from '../../train/preference-loss.js';
import { rewardsOf, trainReward, type RewardResult } from '../../train/reward.js';
import { trainPpo, type PpoResult, type RewardFunction } from '../../train/ppo.js';
import { readRecords } from '../../data/read.js';
import { loadModel } from '../../models/load.js';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { engineOpts, float, int, print } from '../options.js';
import { trainProgress } from '../progress.js';
import { DEFAULTS } from '../../util/defaults.js';

/** The held-out losses in the summary: first -> last, or the one there was (one evaluation is not a trend). */
function evalLine(evals: { step: number; loss: number }[]): string {
  if (!evals.length) return '';
  const last = evals.at(-1)!;
  if (evals.length === 1) return `, eval loss ${last.loss.toFixed(4)} (step ${last.step})`;
  return `, eval loss ${evals[0].loss.toFixed(4)} (step ${evals[0].step}) -> ${last.loss.toFixed(4)} (step ${last.step})`;
}

export function trainCommand(program: Command): void {
  program
    .command('train')
    .description(
      'pre-train (pt) or instruction-tune (sft) a model, fully or with LoRA; checkpoints in Hugging Face layout',
    )
    .requiredOption('-m, --model <dir>', 'model folder (or a shipped model name)')
    .requiredOption(
      '--dataset <files...>',
      'data files (json, jsonl, csv, tsv, parquet, arrow, txt) or dataset_info.json names',
    )
    .option('--dataset-dir <dir>', 'folder with a dataset_info.json (LLaMA-Factory) for dataset names')
    .option('--dataset_ratio <r...>', 'mix the datasets by these shares (LLMBox semantics)')
    .addOption(new Option('--mix <strategy>', 'ratio, concat or interleave').choices(['ratio', 'concat', 'interleave']))
    .option('--mix-total <n>', 'examples in a ratio mixture (default: all)', int('--mix-total', 1))
    .addOption(
      new Option(
        '--stage <stage>',
        'pt (concatenate and chunk), sft (assistant turns are the targets), dpo (preference pairs), rm (a reward model on preference pairs) or ppo (LoRA policy against a reward)',
      )
        .choices(['pt', 'sft', 'dpo', 'rm', 'ppo'])
        .default(DEFAULTS.train.stage),
    )
    .addOption(
      new Option(
        '--template <name>',
        'alpaca, chatml or plain (default: the tokenizer chat template, else alpaca)',
      ).choices(['alpaca', 'chatml', 'plain']),
    )
    .option('--train-on-prompt', 'learn prompt tokens too')
    .option(
      '--no-cache',
      'tokenize again instead of reusing the tokenized cache (LLMBOX_CACHE_DIR, default ~/.cache/llmbox)',
    )
    .option('--packing', 'bin-pack sft examples into full rows (attention stays within each example)')
    .option('--max-length <t>', 'tokens per row', int('--max-length', 2))
    .option('--batch-size <b>', 'rows per micro-batch', int('--batch-size', 1), DEFAULTS.train.batchSize)
    .option('--grad-accum <k>', 'micro-batches per optimizer step', int('--grad-accum', 1), DEFAULTS.train.gradAccum)
    .option('--max-steps <n>', 'optimizer steps (default: one epoch)', int('--max-steps', 1))
    .option(
      '--epochs <e>',
      'passes over the data when --max-steps is not given',
      float('--epochs', 0.001),
      DEFAULTS.train.epochs,
    )
    .option('--lr <x>', 'peak learning rate', float('--lr', 0), DEFAULTS.train.lr)
    .addOption(
      new Option('--schedule <s>', 'learning-rate schedule after warmup')
        .choices(['cosine', 'linear', 'constant'])
        .default(DEFAULTS.train.schedule),
    )
    .option(
      '--warmup <w>',
      'warmup steps, or a fraction of the steps when < 1',
      float('--warmup', 0),
      DEFAULTS.train.warmup,
    )
    .option(
      '--weight-decay <x>',
      'AdamW decoupled weight decay',
      float('--weight-decay', 0),
      DEFAULTS.train.weightDecay,
    )
    .option(
      '--max-grad-norm <x>',
      'clip gradients to this global norm (0: off)',
      float('--max-grad-norm', 0),
      DEFAULTS.train.maxGradNorm,
    )
    .option('--lora-rank <r>', 'train LoRA adapters of this rank instead of all weights', int('--lora-rank', 1))
    .option('--lora-alpha <a>', 'LoRA alpha (default 2 x rank)', float('--lora-alpha', 0))
    .option('--lora-dropout <p>', 'LoRA dropout', float('--lora-dropout', 0, 0.99), DEFAULTS.lora.dropout)
    .option(
      '--lora-targets <names>',
      'comma-separated: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj or all-linear',
      DEFAULTS.lora.targets.join(','),
    )
    .option('--qlora', 'QLoRA: hold the frozen base as 4-bit NF4 (double-quantized) under the LoRA adapters')
    .option('--val-size <n>', 'held out for evaluation loss: a fraction (< 1) or a count', float('--val-size', 0))
    .option('--eval-every <n>', 'evaluation loss every N steps (and at the end)', int('--eval-every', 0), 0)
    .option('--save-every <n>', 'checkpoint every N steps (and at the end)', int('--save-every', 0), 0)
    .option('--seed <n>', 'data order, mixture and initialisation seed', int('--seed', 0), DEFAULTS.train.seed)
    .requiredOption('--output <dir>', 'where checkpoints and the final model go')
    .option('--resume', 'continue from the newest checkpoint in --output')
    .addOption(
      new Option(
        '--export-for <trainer>',
        'train nothing here: write the mixed, tokenized (packed) data as Parquet with a config and launch.sh for this GPU trainer into --output',
      ).choices(['llamafactory', 'trl']),
    )
    .option(
      '--export-gpu-gib <g>',
      '--export-for: memory of one cluster GPU, GiB (sizes the GPU count and ZeRO stage)',
      float('--export-gpu-gib', 1),
      DEFAULTS.train.exportGpuGib,
    )
    .addOption(
      new Option(
        '--loss <loss>',
        `dpo: sigmoid (DPO), hinge, ipo, robust, or the reference-free simpo and orpo (default ${DEFAULTS.preference.loss})`,
      ).choices([...PREFERENCE_LOSSES]),
    )
    .option(
      '--beta <x>',
      `dpo: beta (SimPO's beta; ORPO's lambda) (default ${DEFAULTS.preference.beta})`,
      float('--beta', 0, Infinity, { minExclusive: true }),
    )
    .option(
      '--label-smoothing <x>',
      'dpo: cDPO / robust label-noise probability, in [0, 0.5)',
      float('--label-smoothing', 0, 0.5),
    )
    .option(
      '--simpo-gamma <x>',
      `simpo: the target reward margin gamma (default ${DEFAULTS.preference.simpoGamma})`,
      float('--simpo-gamma', 0),
    )
    .option(
      '--precompute-reference',
      'dpo with LoRA: compute the reference log-probabilities once before training instead of with the adapter off at each step',
    )
    .option(
      '--rm-margin <x>',
      'rm: a margin the chosen reward must clear in the pairwise loss (default 0)',
      float('--rm-margin', 0),
    )
    .option(
      '--reward-module <file>',
      'ppo: a .js/.mjs module whose default export is reward(prompt, response) => number',
    )
    .option('--reward-model <dir>', 'ppo: a reward model folder (from --stage rm) that scores each response')
    .option('--max-new-tokens <n>', 'ppo: response length cap', int('--max-new-tokens', 1))
    .option('--kl-coef <x>', 'ppo: initial KL coefficient (adaptive toward --kl-target)', float('--kl-coef', 0))
    .option(
      '--kl-target <x>',
      'ppo: the KL (nats per response) the coefficient adapts toward',
      float('--kl-target', 0, Infinity, { minExclusive: true }),
    )
    .option('--ppo-epochs <n>', 'ppo: optimisation passes over each rollout', int('--ppo-epochs', 1))
    .option('--json', 'print {"steps", "losses", "eval_loss", "checkpoint", ...} at the end')
    .action(async (o, cmd: Command) => {
      prepareOutputDir(o.output, '--output');
      const ratio = o.dataset_ratio?.map((r: string) => Number(r));
      if (ratio && ratio.some((r: number) => !Number.isFinite(r)))
        throw new LlmboxError(`--dataset_ratio takes numbers, got ${o.dataset_ratio.join(' ')}`, {
          field: '--dataset_ratio',
        });
      const loaded = await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd));
      const bar = trainProgress();
      const opts = {
        datasets: o.dataset,
        dataDir: o.datasetDir,
        datasetRatio: ratio,
        mixStrategy: o.mix,
        mixTotal: o.mixTotal,
        stage: o.stage,
        template: o.template,
        trainOnPrompt: !!o.trainOnPrompt,
        packing: !!o.packing,
        maxLength: o.maxLength,
        batchSize: o.batchSize,
        gradAccum: o.gradAccum,
        maxSteps: o.maxSteps,
        epochs: o.epochs,
        lr: o.lr,
        schedule: o.schedule,
        warmup: o.warmup,
        weightDecay: o.weightDecay,
        maxGradNorm: o.maxGradNorm,
        valSize: o.valSize,
        evalEvery: o.evalEvery,
        saveEvery: o.saveEvery,
        seed: o.seed,
        lora: o.loraRank
          ? {
              rank: o.loraRank,
              alpha: o.loraAlpha,
              dropout: o.loraDropout,
              targets: String(o.loraTargets)
                .split(',')
                .map((x) => x.trim()),
            }
          : undefined,
        qlora: !!o.qlora,
        cache: o.cache,
        output: o.output as string,
        resume: !!o.resume,
        onStep: bar.step,
        onEval: bar.eval,
      };
      if (o.exportFor) {
        const x = await exportTraining(loaded, opts, { target: o.exportFor, gpuGib: o.exportGpuGib });
        const summary = {
          export: o.exportFor,
          dir: x.dir,
          files: x.files,
          rows: x.rows,
          gpus: x.plan.gpus,
          zero_stage: x.plan.zeroStage,
          per_gpu_gib: x.plan.perGpuGib,
          command: x.command,
        };
        return print(
          !!o.json,
          summary,
          `wrote ${x.rows.train} training rows (${x.rows.validation} held out) and a ${o.exportFor} config to ${x.dir}\n${x.plan.gpus} GPU(s)${x.plan.zeroStage ? ', DeepSpeed ZeRO-3' : ''}, about ${x.plan.perGpuGib.toFixed(1)} GiB each; run: ${join(x.dir, 'launch.sh')}`,
        );
      }
      if (o.stage === 'ppo') return printPpo(await trainPpo(loaded, await ppoOptions(o, opts)), !!o.json);
      if (o.stage === 'rm')
        return printReward(await trainReward(loaded, { ...opts, stage: undefined, margin: o.rmMargin }), !!o.json);
      if (o.stage === 'dpo')
        return printPreference(
          await trainPreference(loaded, {
            ...opts,
            stage: undefined,
            preference: {
              loss: o.loss,
              beta: o.beta,
              labelSmoothing: o.labelSmoothing,
              gamma: o.simpoGamma,
              precomputeReference: !!o.precomputeReference,
            },
          }),
          o.output,
          !!o.json,
        );
      const r = await train(loaded, opts);
      const summary = {
        steps: r.steps,
        losses: r.losses,
        eval_loss: r.evalLoss,
        eval_losses: r.evalLosses,
        checkpoint: r.checkpoint,
        output: o.output,
        resumed_from: r.resumedFrom,
        stage: r.stage,
        parameters: r.parameters,
        data: r.data,
        quantization: r.quantization,
        tokens_per_second: r.metrics.length
          ? r.metrics.reduce((a, m) => a + m.tokens, 0) / r.metrics.reduce((a, m) => a + m.seconds, 0)
          : null,
      };
      const text = [
        `trained ${r.steps} steps (${r.stage}${o.loraRank ? `, LoRA r=${o.loraRank}` : ''}; ${r.parameters.trainable.toLocaleString('en-US')} of ${r.parameters.total.toLocaleString('en-US')} parameters trainable)`,
        `loss ${r.losses[0]?.toFixed(4)} -> ${r.losses.at(-1)?.toFixed(4)}${evalLine(r.evalLosses)}`,
        `data: ${r.data.sources.map((s) => `${s.name}: ${s.mixed} (${(100 * s.proportion).toFixed(1)}%)`).join(', ')}; ${r.data.trainRows} rows, ${(100 * r.data.utilisation).toFixed(1)}% of row tokens hold data`,
        ...(r.quantization
          ? [
              `QLoRA base: ${(r.quantization.float32Bytes / 2 ** 20).toFixed(2)} MiB float32 -> ${(r.quantization.nf4Bytes / 2 ** 20).toFixed(2)} MiB NF4 (${(r.quantization.float32Bytes / r.quantization.nf4Bytes).toFixed(2)}x smaller)`,
            ]
          : []),
        `saved to ${o.output} (checkpoint ${r.checkpoint})`,
      ].join('\n');
      print(!!o.json, summary, text);
    });
}

/** The end of a preference run: JSON, or the before/after of the held-out reward accuracy and margin. */
function printPreference(r: PreferenceResult, output: string, json: boolean): void {
  const [first, last] = [r.evals[0], r.evals.at(-1)];
  const summary = {
    stage: r.stage,
    loss_type: r.settings.loss,
    beta: r.settings.beta,
    reference: r.reference,
    steps: r.steps,
    losses: r.metrics.map((m) => m.loss),
    margins: r.metrics.map((m) => m.margin),
    accuracies: r.metrics.map((m) => m.accuracy),
    evals: r.evals,
    pairs: r.pairs,
    parameters: r.parameters,
    checkpoint: r.checkpoint,
    resumed_from: r.resumedFrom,
    output,
  };
  const text = [
    `trained ${r.steps} steps (dpo, ${r.settings.loss} loss, beta ${r.settings.beta}, reference: ${r.reference}; ${r.parameters.trainable.toLocaleString('en-US')} of ${r.parameters.total.toLocaleString('en-US')} parameters trainable)`,
    `pairs: ${r.pairs.train} training, ${r.pairs.val} held out, ${r.pairs.dropped} dropped (no response token within --max-length)`,
    ...(first && last
      ? [
          `held-out reward accuracy ${first.accuracy.toFixed(3)} -> ${last.accuracy.toFixed(3)}, margin ${first.margin.toFixed(4)} -> ${last.margin.toFixed(4)}, loss ${first.loss.toFixed(4)} -> ${last.loss.toFixed(4)}`,
        ]
      : []),
    `saved to ${output}`,
  ].join('\n');
  print(json, summary, text);
}

/** The end of a reward-model run: JSON, or the held-out pair accuracy before and after. */
function printReward(r: RewardResult, json: boolean): void {
  const [first, last] = [r.evals[0], r.evals.at(-1)];
  const summary = {
    stage: r.stage,
    steps: r.steps,
    losses: r.metrics.map((m) => m.loss),
    accuracies: r.metrics.map((m) => m.accuracy),
    evals: r.evals,
    pairs: r.pairs,
    parameters: r.parameters,
    output: r.output,
    checkpoint: r.checkpoint,
    resumed_from: r.resumedFrom,
  };
  const text = [
    `trained a reward model for ${r.steps} steps (${r.parameters.trainable.toLocaleString('en-US')} of ${r.parameters.total.toLocaleString('en-US')} parameters trainable)`,
    ...(first && last
      ? [
          `held-out pair accuracy ${first.accuracy.toFixed(3)} -> ${last.accuracy.toFixed(3)}, reward margin ${first.margin.toFixed(4)} -> ${last.margin.toFixed(4)}`,
        ]
      : []),
    `saved to ${r.output} (LlamaForSequenceClassification layout, score.weight)`,
  ].join('\n');
  print(json, summary, text);
}

/** PPO's prompts (the user turn of each record, or a text row) and reward (a module, or a reward model). */
interface PpoFlags {
  dataset: string[];
  datasetDir?: string;
  rewardModule?: string;
  rewardModel?: string;
  maxSteps?: number;
  batchSize?: number;
  maxNewTokens?: number;
  klCoef?: number;
  klTarget?: number;
  ppoEpochs?: number;
}

async function ppoOptions(
  o: PpoFlags,
  opts: {
    lora?: { rank: number; alpha: number; dropout: number; targets: string[] };
    lr?: number;
    seed?: number;
    output: string;
    maxGradNorm?: number;
    resume?: boolean;
    saveEvery?: number;
  },
) {
  const prompts: string[] = [];
  for (const spec of o.dataset as string[]) {
    for (const r of (await readRecords(spec, { dataDir: o.datasetDir })).records) {
      const turns = r.kind === 'chat' ? r.messages : r.kind === 'preference' ? r.prompt : [];
      const user = [...turns].reverse().find((m) => m.role === 'user');
      if (user) prompts.push(user.content);
      else if (r.kind === 'text') prompts.push(r.text);
    }
  }
  if (!!o.rewardModule === !!o.rewardModel)
    throw new LlmboxError('--stage ppo needs one reward: --reward-module FILE or --reward-model DIR', {
      field: '--reward-module',
    });
  let reward: RewardFunction;
  if (o.rewardModule) {
    if (/\.ts$/.test(o.rewardModule))
      throw new LlmboxError('a TypeScript reward module needs a loader', {
        file: o.rewardModule,
        fix: 'write it as .mjs / .js, or run llmbox under tsx',
      });
    const mod = (await import(pathToFileURL(resolvePath(o.rewardModule)).href)) as {
      default?: unknown;
      reward?: unknown;
    };
    const f = mod.default ?? mod.reward;
    if (typeof f !== 'function')
      throw new LlmboxError('the reward module exports no function', {
        file: o.rewardModule,
        fix: 'export default (prompt, response) => number',
      });
    reward = f as RewardFunction;
  } else {
    const rm = await loadModel(o.rewardModel!);
    reward = async (prompt, response) =>
      (await rewardsOf(rm, [{ prompt: [{ role: 'user', content: prompt }], response }]))[0];
  }
  return {
    prompts,
    reward,
    steps: o.maxSteps ?? 20,
    batchSize: o.batchSize,
    maxNewTokens: o.maxNewTokens,
    klCoef: o.klCoef,
    klTarget: o.klTarget,
    ppoEpochs: o.ppoEpochs,
    lora: opts.lora,
    lr: opts.lr,
    seed: opts.seed,
    maxGradNorm: opts.maxGradNorm,
    output: opts.output,
    resume: opts.resume,
    saveEvery: opts.saveEvery,
  };
}

/** The end of a PPO run: JSON, or the reward and KL at the start and the end. */
function printPpo(r: PpoResult, json: boolean): void {
  const m = r.metrics;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const k = Math.max(1, Math.floor(m.length / 4));
  const [head, tail] = [m.slice(0, k), m.slice(-k)];
  const summary = {
    stage: r.stage,
    steps: r.steps,
    rewards: m.map((x) => x.reward),
    kls: m.map((x) => x.kl),
    metrics: m,
    parameters: r.parameters,
    output: r.output,
    checkpoint: r.checkpoint,
    resumed_from: r.resumedFrom,
  };
  const text = [
    `PPO: ${r.steps} steps (${r.parameters.trainable.toLocaleString('en-US')} of ${r.parameters.total.toLocaleString('en-US')} parameters trainable)`,
    `mean reward ${mean(head.map((x) => x.reward)).toFixed(3)} (first ${k} steps) -> ${mean(tail.map((x) => x.reward)).toFixed(3)} (last ${k}); KL ${mean(head.map((x) => x.kl)).toFixed(3)} -> ${mean(tail.map((x) => x.kl)).toFixed(3)} nats`,
    `saved to ${r.output}`,
  ].join('\n');
  print(json, summary, text);
}
