// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parquetReadObjects } from 'hyparquet';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../lib/models/config.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import { nextTokenLogprobs } from '../lib/models/score.js';
import { loadModelOrAdapter } from '../lib/train/adapted.js';
import { isTarget, type TrainingRow } from '../lib/train/batches.js';
import { exportTraining, planGpus } from '../lib/train/export.js';
import { LLAMAFACTORY_KEYS, TRL_KEYS } from '../lib/train/export-keys.js';
import { minimumGpus } from '../lib/train/gpu-calc.js';
import { addLora, saveAdapter } from '../lib/train/lora.js';
import { trainingData, type TrainOptions } from '../lib/train/trainer.js';
import { SHARED_DATA, STORIES, tmp } from './helpers/models.js';

const DATA = SHARED_DATA;
const SFT = [
  join(DATA, 'sft_samples/dolly_hhrlhf_train_small.jsonl'),
  join(DATA, 'sft_samples/fastchat_dummy_conversation.sharegpt.json'),
];
const read = async (file: string) =>
  (await parquetReadObjects({ file: new Uint8Array(readFileSync(file)).buffer })) as Record<string, number[]>[];
/** The rows the in-process trainer would read, without their padding. */
const trimmed = (r: TrainingRow) => {
  let n = r.segments.length;
  while (n && r.segments[n - 1] === 0) n--;
  return {
    ids: r.ids.slice(0, n),
    segments: r.segments.slice(0, n),
    learned: r.ids.slice(0, n).map((_, t) => t > 0 && isTarget(r, t - 1)),
  };
};

describe('llmbox train --export-for: the training set and config for a GPU trainer', () => {
  let lm: LoadedModel;
  const opts: TrainOptions = {
    datasets: SFT,
    stage: 'sft',
    packing: true,
    maxLength: 256,
    batchSize: 4,
    gradAccum: 2,
    maxSteps: 30,
    lr: 5e-4,
    warmup: 3,
    seed: 7,
    valSize: 10,
    lora: { rank: 4, targets: ['all-linear'] },
  };
  beforeAll(async () => {
    process.env.LLMBOX_CACHE_DIR = tmp();
    lm = await loadModel(STORIES);
  });

  it('LLaMA-Factory: packed rows round-trip (ids, neat_packing segment masks, labels, positions); the YAML uses its keys', async () => {
    const out = tmp();
    const x = await exportTraining(lm, { ...opts, output: out }, { target: 'llamafactory' });
    const { data } = await trainingData(lm, opts);
    const want = Array.from({ length: data.train.length }, (_, i) => trimmed(data.train.get(i)));
    data.close();
    const rows = await read(join(out, 'data/train.parquet'));
    expect(rows).toHaveLength(want.length);
    expect(x.rows).toEqual({ train: want.length, validation: 10 });
    expect(want.some((w) => new Set(w.segments).size > 1)).toBe(true);
    rows.forEach((r, i) => {
      expect(r.input_ids).toEqual(want[i].ids);
      expect(r.attention_mask).toEqual(want[i].segments);
      expect(r.labels).toEqual(want[i].ids.map((id, t) => (want[i].learned[t] ? id : -100)));
      r.position_ids.forEach((p, t) =>
        expect(p).toBe(t > 0 && want[i].segments[t] === want[i].segments[t - 1] ? r.position_ids[t - 1] + 1 : 0),
      );
    });
    expect(await read(join(out, 'data/validation.parquet'))).toHaveLength(10);
    const yaml = parse(readFileSync(join(out, 'llamafactory.yaml'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(yaml).filter((k) => !LLAMAFACTORY_KEYS.has(k))).toEqual([]);
    expect(yaml).toMatchObject({
      model_name_or_path: lm.dir,
      stage: 'sft',
      finetuning_type: 'lora',
      lora_rank: 4,
      lora_alpha: 8,
      lora_target: 'all',
      tokenized_path: 'tokenized',
      neat_packing: true,
      cutoff_len: 256,
      per_device_train_batch_size: 4,
      gradient_accumulation_steps: 2,
      max_steps: 30,
      learning_rate: 5e-4,
      warmup_steps: 3,
      seed: 7,
    });
    const launch = readFileSync(join(out, 'launch.sh'), 'utf8');
    expect(launch).toContain("save_to_disk('tokenized')");
    expect(launch).toContain('llamafactory-cli train llamafactory.yaml');
    // What the trainer writes (a PEFT adapter naming the base it was given) loads back for evaluation.
    const trained = await loadModel(STORIES);
    addLora(trained.model, { rank: 4, alpha: 8, targets: ['q_proj'], seed: 3 });
    trained.model.adapters.forEach(
      (t, name) => name.endsWith('lora_B') && trained.model.adapters.set(name, t.add(0.01)),
    );
    saveAdapter(join(out, 'model'), trained.model, String(yaml.model_name_or_path));
    const back = await loadModelOrAdapter(join(out, 'model'), undefined);
    const ids = [1, 403, 407, 261, 378];
    const trainedLp = await nextTokenLogprobs(trained.model, ids);
    (await nextTokenLogprobs(back.model, ids)).forEach((x, i) => expect(Math.abs(x - trainedLp[i])).toBeLessThan(1e-4));
  });

  it('TRL: rows with completion masks and per-example lengths; SFTConfig arguments only; pre-training rows too', async () => {
    const out = tmp();
    await exportTraining(lm, { ...opts, output: out }, { target: 'trl' });
    const { data } = await trainingData(lm, opts);
    const want = trimmed(data.train.get(0));
    data.close();
    const [first] = await read(join(out, 'data/train.parquet'));
    expect(first.input_ids).toEqual(want.ids);
    expect(first.completion_mask).toEqual(want.learned.map(Number));
    const lengths: number[] = [];
    want.segments.forEach((s, t) =>
      t > 0 && want.segments[t - 1] === s ? lengths[lengths.length - 1]++ : lengths.push(1),
    );
    expect(first.seq_lengths).toEqual(lengths);
    const cfg = JSON.parse(readFileSync(join(out, 'trl_config.json'), 'utf8'));
    expect(Object.keys(cfg.sft_config).filter((k) => !TRL_KEYS.has(k))).toEqual([]);
    expect(cfg.sft_config).toMatchObject({
      packing: false,
      padding_free: true,
      completion_only_loss: true,
      dataset_kwargs: { skip_prepare_dataset: true },
      max_length: 256,
    });
    expect(cfg.peft).toEqual({
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0,
      target_modules: 'all-linear',
      task_type: 'CAUSAL_LM',
    });
    expect(readFileSync(join(out, 'train_trl.py'), 'utf8')).toContain('SFTTrainer(');
    const pt = tmp();
    const px = await exportTraining(
      lm,
      {
        datasets: [join(DATA, 'pretrain_text/tinyshakespeare.txt')],
        stage: 'pt',
        maxLength: 128,
        maxSteps: 5,
        valSize: 0,
        output: pt,
      },
      { target: 'trl' },
    );
    const ptRows = await read(join(pt, 'data/train.parquet'));
    expect(ptRows).toHaveLength(px.rows.train);
    expect(ptRows[0].input_ids).toHaveLength(128);
    expect(ptRows[0].completion_mask.slice(1).every((m) => m === 1)).toBe(true);
  });

  it('sizes the cluster with the GPU calculator: LLaMA-2 7B full fine-tuning needs ZeRO-3, LoRA fits one GPU', () => {
    const config = parseConfig(
      {
        model_type: 'llama',
        vocab_size: 32000,
        hidden_size: 4096,
        intermediate_size: 11008,
        num_hidden_layers: 32,
        num_attention_heads: 32,
        num_key_value_heads: 32,
        max_position_embeddings: 4096,
        tie_word_embeddings: false,
      },
      'llama-2-7b',
    );
    const seven = { dir: 'llama-2-7b', model: { config } } as unknown as LoadedModel;
    const full = planGpus(seven, { datasets: [], batchSize: 1 }, 4096, 80);
    expect(full.zeroStage).toBe(3);
    const base = {
      params: 6_738_415_616,
      layers: 32,
      seq: 4096,
      hidden: 4096,
      vocab: 32000,
      batch: 1,
      setting: 'zero3' as const,
    };
    expect(full.gpus).toBe(minimumGpus(base, 80)!.gpus);
    expect(planGpus(seven, { datasets: [], batchSize: 1, lora: { rank: 8 } }, 4096, 80)).toMatchObject({
      gpus: 1,
      zeroStage: 0,
    });
  });
});
