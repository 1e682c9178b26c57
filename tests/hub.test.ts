import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, lstatSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LlmboxError } from '../lib/errors.js';
import { hubSettings, type HubSettings } from '../lib/hub/config.js';
import { pull } from '../lib/hub/pull.js';
import { parseRepo } from '../lib/hub/repo.js';
import { loadModel } from '../lib/models/load.js';
import { generate } from '../lib/models/generate.js';
import { mockHub } from './helpers/mock-hub.js';
import { STORIES, tmp } from './helpers/models.js';

const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'llmbox.js');
const DEMO_ARC = join(ROOT, 'data', 'demo', 'arc');
const MODEL_FILES = [
  'PROVENANCE.md',
  'REFERENCE.json',
  'config.json',
  'generation_config.json',
  'model.safetensors',
  'special_tokens_map.json',
  'tokenizer.json',
  'tokenizer_config.json',
];

let hubs: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(hubs.map((h) => h.close()));
  hubs = [];
});

async function start(...args: Parameters<typeof mockHub>) {
  const hub = await mockHub(...args);
  hubs.push(hub);
  return hub;
}

const settings = (endpoint: string, extra: Partial<HubSettings> = {}): HubSettings => ({
  endpoint,
  token: undefined,
  cacheDir: tmp(),
  offline: false,
  ...extra,
});

/** A loopback port nothing listens on. */
function closedPort(): Promise<number> {
  return new Promise((done) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => done(port));
    });
  });
}

async function refusal(p: Promise<unknown>): Promise<LlmboxError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(LlmboxError);
  return e as LlmboxError;
}

describe('hub settings and names', () => {
  it('reads the environment as huggingface_hub does', () => {
    const home = tmp();
    writeFileSync(join(home, 'token'), 'hf_fromfile\n');
    expect(hubSettings({ HF_HOME: home })).toEqual({
      endpoint: 'https://huggingface.co',
      token: 'hf_fromfile',
      cacheDir: join(home, 'hub'),
      offline: false,
    });
    const s = hubSettings({
      HF_ENDPOINT: 'http://mirror:8080/',
      HF_TOKEN: 'hf_env',
      HF_HUB_CACHE: '/big/cache',
      HF_HUB_OFFLINE: '1',
      HF_HOME: home,
    });
    expect(s).toEqual({ endpoint: 'http://mirror:8080', token: 'hf_env', cacheDir: '/big/cache', offline: true });
    expect(hubSettings({ XDG_CACHE_HOME: '/xdg', HF_TOKEN_PATH: '/nonexistent' }).cacheDir).toBe(
      '/xdg/huggingface/hub',
    );
  });

  it('parses repositories and refuses what is not one', () => {
    expect(parseRepo('hf:TinyLlama/TinyLlama-1.1B@v1.0')).toEqual({
      type: 'model',
      id: 'TinyLlama/TinyLlama-1.1B',
      revision: 'v1.0',
    });
    expect(parseRepo('datasets/allenai/ai2_arc')).toEqual({ type: 'dataset', id: 'allenai/ai2_arc', revision: 'main' });
    expect(parseRepo('gpt2', 'dataset').type).toBe('dataset');
    for (const bad of ['hf:', 'a/b/c', '../x', 'a/b@', 'a b'])
      expect(() => parseRepo(bad)).toThrow(/not a hub repository/);
  });
});

describe('llmbox pull against a mock hub on loopback', () => {
  it('pulls a model into the huggingface_hub cache layout; it loads and generates as the local folder does', async () => {
    const hub = await start([{ type: 'model', id: 'llmbox/stories260K', dir: STORIES }], { pageSize: 3 });
    const s = settings(hub.url);
    const r = await pull('llmbox/stories260K', { settings: s });
    const repoDir = join(s.cacheDir, 'models--llmbox--stories260K');
    expect(r.dir).toBe(join(repoDir, 'snapshots', hub.commit));
    expect(r.files.map((f) => f.path).sort()).toEqual(MODEL_FILES); // three tree pages
    expect(readFileSync(join(repoDir, 'refs', 'main'), 'utf8')).toBe(hub.commit);
    const weights = join(r.dir, 'model.safetensors');
    expect(lstatSync(weights).isSymbolicLink()).toBe(true);
    expect(readlinkSync(weights)).toMatch(/^\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/);
    for (const f of MODEL_FILES)
      expect(readFileSync(join(r.dir, f)).equals(readFileSync(join(STORIES, f))), f).toBe(true);
    expect(r.bytesDownloaded).toBe(r.files.reduce((a, f) => a + f.size, 0));
    // The weights went hub -> 302 -> CDN; the CDN never saw a token (none set here) and the hub sent every small file itself.
    expect(hub.seen.filter((x) => x.host === 'cdn').map((x) => x.url)).toEqual([
      `/blobs/${readlinkSync(weights).split('/').pop()}`,
    ]);

    const local = await loadModel(STORIES);
    // The library reads the hub from the environment, as the CLI does.
    const saved = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_HUB_CACHE: process.env.HF_HUB_CACHE };
    Object.assign(process.env, { HF_ENDPOINT: hub.url, HF_HUB_CACHE: s.cacheDir });
    const fromHub = await loadModel('hf:llmbox/stories260K').finally(() => {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    });
    expect(fromHub.name).toBe('llmbox/stories260K');
    const opts = { maxNewTokens: 12 };
    expect((await generate(fromHub, ['Once upon a time'], opts))[0].text).toBe(
      (await generate(local, ['Once upon a time'], opts))[0].text,
    );
    fromHub.model.dispose();
    local.model.dispose();
  }, 60_000);

  it('a second pull downloads nothing; offline (HF_HUB_OFFLINE) sends no request at all', async () => {
    const hub = await start([{ type: 'model', id: 'llmbox/stories260K', dir: STORIES }]);
    const s = settings(hub.url);
    await pull('llmbox/stories260K', { settings: s });
    const before = hub.downloads().length;
    const again = await pull('llmbox/stories260K', { settings: s });
    expect(hub.downloads().length).toBe(before);
    expect(again.bytesDownloaded).toBe(0);
    expect(again.files.every((f) => !f.downloaded)).toBe(true);
    const requests = hub.seen.length;
    const offline = await pull('llmbox/stories260K', { settings: { ...s, offline: true } });
    expect(hub.seen.length).toBe(requests);
    expect(offline.dir).toBe(again.dir);
    expect(offline.files.map((f) => f.path).sort()).toEqual(MODEL_FILES);
    const missing = await refusal(pull('llmbox/other', { settings: { ...s, offline: true } }));
    expect(missing.message).toMatch(/not in the cache and HF_HUB_OFFLINE is set/);
  });

  it('a connection cut mid-file is resumed with a Range request, and the file checks out', async () => {
    const hub = await start([{ type: 'model', id: 'llmbox/stories260K', dir: STORIES }], {
      breakOnce: 'model.safetensors',
    });
    const r = await pull('llmbox/stories260K', { settings: settings(hub.url) });
    const cdn = hub.seen.filter((x) => x.host === 'cdn');
    expect(cdn).toHaveLength(2);
    expect(cdn[0].range).toBeUndefined();
    expect(cdn[1].range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(
      readFileSync(join(r.dir, 'model.safetensors')).equals(readFileSync(join(STORIES, 'model.safetensors'))),
    ).toBe(true);
  });

  it('a server that ignores Range gets the whole file again; the result is the same', async () => {
    const hub = await start([{ type: 'model', id: 'llmbox/stories260K', dir: STORIES }], {
      breakOnce: 'model.safetensors',
      ranges: false,
    });
    const r = await pull('llmbox/stories260K', { settings: settings(hub.url), include: ['*.safetensors'] });
    expect(r.files.map((f) => f.path)).toEqual(['model.safetensors']);
    expect(
      readFileSync(join(r.dir, 'model.safetensors')).equals(readFileSync(join(STORIES, 'model.safetensors'))),
    ).toBe(true);
  });

  it('corrupt bytes are refused, named, and not kept', async () => {
    const hub = await start([{ type: 'model', id: 'llmbox/stories260K', dir: STORIES }], { corrupt: 'config.json' });
    const s = settings(hub.url);
    const e = await refusal(pull('llmbox/stories260K', { settings: s }));
    expect(e.message).toMatch(
      /config\.json from llmbox\/stories260K@main is corrupt: git sha1 [0-9a-f]{40}, the hub says [0-9a-f]{40}/,
    );
    expect(existsSync(e.file!)).toBe(false);
    expect(existsSync(`${e.file}.incomplete`)).toBe(false);
  });

  it('404s and refusals name the repository and the fix; a token is sent to the hub only', async () => {
    const hub = await start([{ type: 'model', id: 'llmbox/private', dir: STORIES, token: 'hf_secret' }]);
    const nf = await refusal(pull('llmbox/nope', { settings: settings(hub.url) }));
    expect(nf.message).toMatch(/llmbox\/nope@main: repository not found/);
    const rev = await refusal(pull('llmbox/private@v9', { settings: settings(hub.url, { token: 'hf_secret' }) }));
    expect(rev.message).toMatch(/no revision v9/);
    const denied = await refusal(pull('llmbox/private', { settings: settings(hub.url) }));
    expect(denied.message).toMatch(/refused access to llmbox\/private@main \(401 GatedRepo\)/);
    expect(denied.fix).toMatch(/set HF_TOKEN/);
    const none = await refusal(
      pull('llmbox/private', { settings: settings(hub.url, { token: 'hf_secret' }), include: ['*.gguf'] }),
    );
    expect(none.message).toMatch(/no file matches/);
    const ok = await pull('llmbox/private', { settings: settings(hub.url, { token: 'hf_secret' }) });
    expect(ok.files).toHaveLength(MODEL_FILES.length);
    expect(hub.seen.filter((x) => x.host === 'hub' && x.authorization).length).toBeGreaterThan(0);
    expect(hub.seen.filter((x) => x.host === 'cdn').every((x) => x.authorization === undefined)).toBe(true);
    const closed = await closedPort();
    const down = await refusal(pull('llmbox/private', { settings: settings(`http://127.0.0.1:${closed}`) }));
    expect(down.message).toContain(`cannot reach the hub at http://127.0.0.1:${closed}: ECONNREFUSED`);
  });

  it('CLI: llmbox pull of a data set and of a model, and -m hf:org/name, with the hub from the environment', async () => {
    const hub = await start([
      { type: 'model', id: 'llmbox/stories260K', dir: STORIES },
      { type: 'dataset', id: 'allenai/ai2_arc', dir: DEMO_ARC },
    ]);
    const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: tmp(), HF_TOKEN: 'hf_never_printed' };
    // Asynchronously: the mock hub lives in this process.
    const run = (...args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
        const child = spawn(process.execPath, [BIN, ...args], { env });
        let stdout = '',
          stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('close', (status) => done({ status, stdout, stderr }));
      });
    const data = await run('pull', 'datasets/allenai/ai2_arc', '--json');
    expect(data.status, data.stderr).toBe(0);
    const j = JSON.parse(data.stdout);
    expect(j.repo).toBe('datasets/allenai/ai2_arc@main');
    expect(j.files.map((f: { path: string }) => f.path).sort()).toEqual(['ARC-Easy-Test.jsonl', 'PROVENANCE.md']);
    expect(readFileSync(join(j.dir, 'ARC-Easy-Test.jsonl'), 'utf8')).toBe(
      readFileSync(join(DEMO_ARC, 'ARC-Easy-Test.jsonl'), 'utf8'),
    );
    expect(data.stderr).toMatch(/2\/2 files/);

    const gen = await run(
      'generate',
      '-m',
      'hf:llmbox/stories260K',
      '-p',
      'Once upon a time',
      '--max-new-tokens',
      '8',
      '--json',
    );
    expect(gen.status, gen.stderr).toBe(0);
    const local = await run('generate', '-m', STORIES, '-p', 'Once upon a time', '--max-new-tokens', '8', '--json');
    expect(JSON.parse(gen.stdout).text).toBe(JSON.parse(local.stdout).text);
    const text = await run('pull', 'llmbox/stories260K');
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/8 files, 0 downloaded \(0\.0 MiB\), 8 already in the cache/);
    const missing = await run('pull', 'llmbox/missing');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^llmbox: llmbox\/missing@main: repository not found/);
    for (const r of [data, gen, text, missing]) expect(r.stdout + r.stderr).not.toContain('hf_never_printed');
  }, 120_000);
});
