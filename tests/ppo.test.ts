import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { llm, Reinforcement } from '../lib/llm.js';
import { loadModel } from '../lib/models/load.js';
import { AdaptiveKl, gae, tokenRewards, whiten } from '../lib/train/ppo-math.js';
import { trainPpo } from '../lib/train/ppo.js';
import { STORIES, tmp } from './helpers/models.js';

describe('PPO arithmetic, worked by hand', () => {
  it('adds the KL penalty to every token and the score to the last', () => {
    // log-ratios 0.5, -0.25, 1; beta 0.2
    expect(tokenRewards([-1, -2, -0.5], [-1.5, -1.75, -1.5], 3, 0.2)).toEqual([-0.1, 0.05, -0.2 + 3]);
  });
  it('estimates advantages by GAE and returns as advantages plus values', () => {
    // rewards [0, 0, 1], values [0.5, 0.5, 0.5], gamma 1, lambda 0.5:
    // delta = [0 + 0.5 - 0.5, 0 + 0.5 - 0.5, 1 + 0 - 0.5] = [0, 0, 0.5]
    // A2 = 0.5, A1 = 0 + 0.5 * 0.5 = 0.25, A0 = 0 + 0.5 * 0.25 = 0.125
    const g = gae([0, 0, 1], [0.5, 0.5, 0.5], 1, 0.5);
    expect(g.advantages).toEqual([0.125, 0.25, 0.5]);
    expect(g.returns).toEqual([0.625, 0.75, 1]);
    // lambda 1, gamma 1: the advantage is the return to go minus the value
    expect(gae([1, 2, 3], [0, 0, 0], 1, 1).advantages).toEqual([6, 5, 3]);
  });
  it('whitens to zero mean and unit variance', () => {
    const w = whiten([1, 2, 3, 4]);
    expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(0, 9);
    expect(w.reduce((a, b) => a + b * b, 0) / 4).toBeCloseTo(1, 6);
  });
  it('moves the KL coefficient toward its target by at most 20% of the error per horizon', () => {
    const kl = new AdaptiveKl(0.2, 6, 100);
    // KL 12 is 100% over target: clipped to +20%, times 10/100 samples: x1.02
    expect(kl.update(12, 10)).toBeCloseTo(0.204, 9);
    // KL 3 is 50% under: clipped to -20%: x0.98
    expect(kl.update(3, 10)).toBeCloseTo(0.204 * 0.98, 9);
  });
});

describe('PPO on the shipped model', () => {
  it('trains only the adapters and a value head it does not keep; the base (the reference) is unchanged', async () => {
    const loaded = await loadModel(STORIES);
    const base = new Map([...loaded.model.params].map(([k, t]) => [k, t.dataSync().slice()]));
    const r = await trainPpo(loaded, {
      prompts: ['Once upon a time', 'The little dog'],
      reward: (_p, resp) => resp.match(/\bthe\b/gi)?.length ?? 0,
      steps: 3,
      batchSize: 4,
      maxNewTokens: 12,
      lr: 3e-3,
      lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
    });
    expect(r.metrics).toHaveLength(3);
    for (const m of r.metrics) {
      for (const v of [m.reward, m.kl, m.entropy, m.clipFraction, m.policyLoss, m.valueLoss])
        expect(Number.isFinite(v)).toBe(true);
      expect(m.clipFraction).toBeGreaterThanOrEqual(0);
    }
    // the first rollout comes from the untouched policy: LoRA's B starts at zero, so KL is 0
    expect(r.metrics[0].kl).toBeCloseTo(0, 6);
    expect(loaded.model.params.has('value.weight')).toBe(false);
    for (const [k, v] of base) expect(loaded.model.params.get(k)!.dataSync()).toEqual(v);
    expect(loaded.model.adapters.size).toBeGreaterThan(0);
  }, 60_000);

  it('resumes exactly from its newest checkpoint: adapter, value head, optimizer and KL coefficient', async () => {
    const out = join(tmp('llmbox-ppo-resume-'), 'run');
    const opts = {
      prompts: ['Once upon a time', 'The little dog', 'A cat'],
      reward: (_p: string, resp: string) => resp.match(/\bthe\b/gi)?.length ?? 0,
      steps: 4,
      saveEvery: 2,
      batchSize: 3,
      maxNewTokens: 8,
      lr: 3e-3,
      klTarget: 0.5,
      output: out,
      lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
    };
    const whole = await trainPpo(await loadModel(STORIES), opts);
    rmSync(join(out, 'checkpoint-4'), { recursive: true });
    const resumed = await trainPpo(await loadModel(STORIES), { ...opts, resume: true });
    expect(resumed.resumedFrom).toBe(2);
    expect(resumed.metrics.map((m) => m.step)).toEqual([1, 2, 3, 4]);
    for (let i = 2; i < 4; i++) {
      expect(resumed.metrics[i].reward).toBeCloseTo(whole.metrics[i].reward, 6);
      expect(resumed.metrics[i].klCoef).toBeCloseTo(whole.metrics[i].klCoef, 9);
      expect(resumed.metrics[i].policyLoss).toBeCloseTo(whole.metrics[i].policyLoss, 4);
      expect(resumed.metrics[i].valueLoss).toBeCloseTo(whole.metrics[i].valueLoss, 4);
    }
    // the adaptive coefficient moved (so restoring it mattered)
    expect(whole.metrics[2].klCoef).not.toBe(whole.metrics[0].klCoef);
  }, 180_000);

  it('needs LoRA and finite rewards', async () => {
    const loaded = await loadModel(STORIES);
    await expect(trainPpo(loaded, { prompts: ['a'], reward: () => 1, steps: 1 })).rejects.toThrow(/LoRA/);
    await expect(
      trainPpo(await loadModel(STORIES), {
        prompts: ['Once upon a time'],
        reward: () => NaN,
        steps: 1,
        batchSize: 2,
        maxNewTokens: 4,
        lora: { rank: 2, alpha: 4, targets: ['q_proj'] },
      }),
    ).rejects.toThrow(/not a finite number/);
  }, 60_000);
});

describe('the fluent chain', () => {
  it("train({ stage: 'ppo', reward }) gives a Reinforcement: a per-step table and a reward/KL chart", async () => {
    const r = await llm.load(STORIES).train({
      stage: 'ppo',
      prompts: ['Once upon a time'],
      reward: (_p, resp) => resp.length / 10,
      steps: 2,
      batchSize: 2,
      maxNewTokens: 6,
      lora: { rank: 2, alpha: 4, targets: ['q_proj'] },
    });
    expect(r).toBeInstanceOf(Reinforcement);
    expect(r.table.numRows).toBe(2);
    const fig = r.plot().toJSON() as unknown as { data: { name: string }[] };
    expect(fig.data.map((d) => d.name)).toEqual(['mean reward', 'KL to the reference']);
  }, 60_000);
});

describe('llmbox train --stage ppo', () => {
  const bin = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));
  it('optimises against a reward module and saves the adapter; refuses a run with no reward', () => {
    const dir = tmp('llmbox-ppo-cli-');
    writeFileSync(join(dir, 'reward.mjs'), 'export default (prompt, response) => response.length / 100;\n');
    writeFileSync(join(dir, 'prompts.jsonl'), '{"text": "Once upon a time"}\n{"text": "The little dog"}\n');
    const args = [
      bin,
      'train',
      '-m',
      STORIES,
      '--stage',
      'ppo',
      '--dataset',
      join(dir, 'prompts.jsonl'),
      '--lora-rank',
      '2',
    ];
    const r = spawnSync(
      process.execPath,
      [
        ...args,
        '--reward-module',
        join(dir, 'reward.mjs'),
        '--max-steps',
        '2',
        '--batch-size',
        '2',
        '--max-new-tokens',
        '6',
        '--output',
        join(dir, 'out'),
        '--json',
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ stage: 'ppo', steps: 2 });
    expect(j.rewards).toHaveLength(2);
    expect(existsSync(join(dir, 'out', 'adapter_config.json'))).toBe(true);
    const none = spawnSync(process.execPath, [...args, '--output', join(dir, 'out2')], { encoding: 'utf8' });
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/needs one reward/);
  }, 60_000);
});
