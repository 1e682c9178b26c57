/**
 * LLaMA-family models in GGUF, llama.cpp's format: read into the Hugging Face layout the model code
 * uses (tensor names, [out, in] weights, the rotate_half query/key layout), and written back from it
 * as llama.cpp's convert_hf_to_gguf.py writes them, tokenizer included.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { allocWeightBytes } from '../engine/native.js';
import { LlmboxError } from '../errors.js';
import type { ModelConfig } from './config.js';
import { decodeGgml, encodeGgml } from './ggml-quants.js';
import {
  GGML,
  ggmlTypeName,
  openGguf,
  tensorBytes,
  writeGguf,
  type GgufFile,
  type GgufTensorInfo,
  type GgufTensorOut,
  type GgufValue,
} from './gguf-file.js';
import type { RawTensor } from './safetensors.js';
import type { TextTokenizer } from './tokenizer.js';
import type { PackedMatrix } from '../engine/ops.js';
import { packedFromBytes } from './packed.js';

type Json = Record<string, unknown>;

/** A path names a GGUF file (rather than a model folder). */
export function isGgufPath(path: string): boolean {
  return path.toLowerCase().endsWith('.gguf');
}

/** GGUF tensor name stems <-> Hugging Face names (per layer where `{i}` appears). */
const NAME_MAP: [string, string][] = [
  ['token_embd', 'model.embed_tokens'],
  ['output_norm', 'model.norm'],
  ['output', 'lm_head'],
  ['blk.{i}.attn_norm', 'model.layers.{i}.input_layernorm'],
  ['blk.{i}.ffn_norm', 'model.layers.{i}.post_attention_layernorm'],
  ['blk.{i}.attn_q', 'model.layers.{i}.self_attn.q_proj'],
  ['blk.{i}.attn_k', 'model.layers.{i}.self_attn.k_proj'],
  ['blk.{i}.attn_v', 'model.layers.{i}.self_attn.v_proj'],
  ['blk.{i}.attn_output', 'model.layers.{i}.self_attn.o_proj'],
  ['blk.{i}.attn_q_norm', 'model.layers.{i}.self_attn.q_norm'],
  ['blk.{i}.attn_k_norm', 'model.layers.{i}.self_attn.k_norm'],
  ['blk.{i}.ffn_gate', 'model.layers.{i}.mlp.gate_proj'],
  ['blk.{i}.ffn_up', 'model.layers.{i}.mlp.up_proj'],
  ['blk.{i}.ffn_down', 'model.layers.{i}.mlp.down_proj'],
];

function renamer(from: 0 | 1): (name: string) => string | null {
  const rules = NAME_MAP.map((pair) => {
    const [src, dst] = from === 0 ? pair : [pair[1], pair[0]];
    const re = new RegExp(`^${src.replace(/\./g, '\\.').replace('{i}', '(\\d+)')}\\.(weight|bias)$`);
    return { re, dst };
  });
  return (name) => {
    for (const { re, dst } of rules) {
      const m = re.exec(name);
      if (m) return `${m.length === 3 ? dst.replace('{i}', m[1]) : dst}.${m.at(-1)}`;
    }
    return null;
  };
}
const toHfName = renamer(0);
const toGgufName = renamer(1);

/**
 * llama.cpp's LLaMA layout rotates interleaved pairs, so its converter permutes the rows of q and k
 * within each head of D rows: HF row (j * D/2 + i) goes to row (i * 2 + j), the row this returns.
 */
const ggufRow = (hf: number, D: number) => (hf % (D / 2)) * 2 + Math.floor(hf / (D / 2));

/** Float32 q or k rows permuted to GGUF's order, or with `back` to Hugging Face's. In place, one head copied at a time. */
function permuteHeads(data: Float32Array, heads: number, cols: number, back: boolean): Float32Array {
  const D = data.length / cols / heads;
  for (let h = 0; h < heads; h++) {
    const head = data.slice(h * D * cols, (h + 1) * D * cols);
    for (let hf = 0; hf < D; hf++) {
      const [src, dst] = back ? [ggufRow(hf, D), hf] : [hf, ggufRow(hf, D)];
      data.set(head.subarray(src * cols, (src + 1) * cols), (h * D + dst) * cols);
    }
  }
  return data;
}

/**
 * A q or k matrix in Hugging Face's row order, read from the file a head at a time into a copy of its
 * own: rows are whole units in every type, so un-permuting moves byte rows. Its mapped pages are
 * never touched, and no whole second copy is made (reading the 7B's q and k whole, then moving their
 * rows in place, took 2.4 + 1.6 s of a 4.6 s load; a head at a time, the load took 1.0-1.2 s where
 * that took 5.3-5.9, alternating).
 */
function unpermutedRows(g: GgufFile, t: GgufTensorInfo, heads: number, rows: number): Uint8Array {
  const row = t.bytes / rows;
  const D = rows / heads;
  const out = allocWeightBytes(t.bytes);
  const head = new Uint8Array(D * row);
  for (let h = 0; h < heads; h++) {
    g.readInto(t, h * D * row, head);
    for (let hf = 0; hf < D; hf++) {
      const gg = ggufRow(hf, D);
      out.set(head.subarray(gg * row, (gg + 1) * row), (h * D + hf) * row);
    }
  }
  return out;
}

function meta<T extends GgufValue['value']>(file: GgufFile, key: string): T | undefined {
  return file.metadata.get(key)?.value as T | undefined;
}

/** The GGUF's hyper-parameters as a Hugging Face config.json. */
function configFrom(g: GgufFile, file: string): Json {
  const arch = meta<string>(g, 'general.architecture');
  if (arch !== 'llama' && arch !== 'qwen2' && arch !== 'qwen3') {
    throw new LlmboxError(`GGUF architecture ${arch ?? '(none)'} is not supported`, {
      file,
      field: 'general.architecture',
      fix: 'llmbox reads llama (LLaMA, Mistral), qwen2 and qwen3 GGUF files',
    });
  }
  const need = (key: string) => {
    const v = meta<number>(g, `${arch}.${key}`);
    if (typeof v !== 'number') throw new LlmboxError(`missing ${arch}.${key}`, { file, field: `${arch}.${key}` });
    return v;
  };
  const heads = need('attention.head_count');
  const hidden = need('embedding_length');
  const embd = g.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embd) throw new LlmboxError('no token_embd.weight tensor', { file });
  const scaling = meta<string>(g, `${arch}.rope.scaling.type`);
  return {
    model_type: arch,
    vocab_size: embd.dims[1],
    hidden_size: hidden,
    intermediate_size: need('feed_forward_length'),
    num_hidden_layers: need('block_count'),
    num_attention_heads: heads,
    num_key_value_heads: meta<number>(g, `${arch}.attention.head_count_kv`) ?? heads,
    head_dim: meta<number>(g, `${arch}.attention.key_length`) ?? hidden / heads,
    max_position_embeddings: need('context_length'),
    rms_norm_eps: need('attention.layer_norm_rms_epsilon'),
    rope_theta: meta<number>(g, `${arch}.rope.freq_base`) ?? 10000,
    rope_scaling:
      scaling === 'linear' ? { type: 'linear', factor: meta<number>(g, `${arch}.rope.scaling.factor`) } : null,
    tie_word_embeddings: !g.tensors.some((t) => t.name === 'output.weight'),
    bos_token_id: meta<number>(g, 'tokenizer.ggml.bos_token_id') ?? null,
    eos_token_id: meta<number>(g, 'tokenizer.ggml.eos_token_id') ?? null,
  };
}

export interface GgufModel {
  config: Json;
  raw: Map<string, RawTensor>;
  /** With `keepPacked`: the linear weights in their stored type, undecoded. */
  packed: Map<string, PackedMatrix>;
  /** tokenizer.json and tokenizer_config.json contents, or null when the file carries no tokenizer. */
  tokenizer: { json: Json; config: Json } | null;
  /** Each tensor's stored type, for messages and reports. */
  types: Map<string, string>;
}

/** Reads a GGUF model into Hugging Face names and layout (weights decoded to float32). */
export function readGgufModel(file: string, opts: { keepPacked?: boolean; mmap?: boolean } = {}): GgufModel {
  const g = openGguf(file, { mmap: opts.mmap });
  try {
    const config = configFrom(g, file);
    const permute = config.model_type === 'llama';
    const raw = new Map<string, RawTensor>();
    const packed = new Map<string, PackedMatrix>();
    const types = new Map<string, string>();
    for (const t of g.tensors) {
      if (t.name === 'rope_freqs.weight') continue; // llama 3 frequency factors: recomputed from the config
      const name = toHfName(t.name);
      if (!name)
        throw new LlmboxError(`unexpected tensor ${t.name}`, {
          file,
          fix: 'llmbox reads LLaMA-family GGUF files (llama, mistral, qwen2, qwen3)',
        });
      const n = t.dims.reduce((a, d) => a * d, 1);
      const shape = [...t.dims].reverse();
      const heads =
        !permute || !/\.(q_proj|k_proj)\.weight$/.test(name)
          ? 0
          : name.includes('q_proj')
            ? (config.num_attention_heads as number)
            : (config.num_key_value_heads as number);
      types.set(name, ggmlTypeName(t.type));
      if (opts.keepPacked && shape.length === 2 && t.type !== GGML.F32) {
        const bytes = heads ? unpermutedRows(g, t, heads, shape[0]) : g.read(t);
        packed.set(name, packedFromBytes(bytes, t.type, shape[0], shape[1]));
        continue;
      }
      let data = decodeGgml(t.type, g.read(t), n);
      if (heads) data = permuteHeads(data, heads, shape[1], true);
      raw.set(name, { shape, data });
    }
    return { config, raw, packed, tokenizer: tokenizerFrom(g, file), types };
  } finally {
    g.close();
  }
}

/**
 * The tokenizer: tokenizer.json beside the file when there is one, else rebuilt from the GGUF's
 * SentencePiece vocabulary (tokenizer.ggml.model "llama": tokens, scores, types) as a byte-fallback
 * BPE, its merges ordered by score as transformers' LlamaConverter orders them.
 */
function tokenizerFrom(g: GgufFile, file: string): GgufModel['tokenizer'] {
  const beside = join(dirname(file), 'tokenizer.json');
  if (existsSync(beside)) {
    const cfgFile = join(dirname(file), 'tokenizer_config.json');
    return {
      json: JSON.parse(readFileSync(beside, 'utf8')),
      config: existsSync(cfgFile) ? JSON.parse(readFileSync(cfgFile, 'utf8')) : {},
    };
  }
  // llmbox's own exports (and some converters) embed the original tokenizer.json: exact, normalizer included.
  const embedded = meta<string>(g, 'tokenizer.huggingface.json');
  if (embedded) return { json: JSON.parse(embedded) as Json, config: spmConfig(g) };
  const kind = meta<string>(g, 'tokenizer.ggml.model');
  if (kind === undefined) return null;
  if (kind !== 'llama') {
    throw new LlmboxError(`GGUF tokenizer ${kind} is not rebuilt by llmbox`, {
      file,
      field: 'tokenizer.ggml.model',
      fix: "put the model's tokenizer.json (and tokenizer_config.json) beside the .gguf file",
    });
  }
  const tokens = meta<string[]>(g, 'tokenizer.ggml.tokens')!;
  const scores = meta<number[]>(g, 'tokenizer.ggml.scores') ?? tokens.map((_, i) => -i);
  const types = meta<number[]>(g, 'tokenizer.ggml.token_type') ?? tokens.map(() => 1);
  const vocab = Object.fromEntries(tokens.map((t, i) => [t, i]));
  const merges: { pair: [string, string]; score: number }[] = [];
  tokens.forEach((t, id) => {
    if (types[id] !== 1) return;
    const chars = [...t];
    const local: [string, string][] = [];
    for (let k = 1; k < chars.length; k++) {
      const [a, b] = [chars.slice(0, k).join(''), chars.slice(k).join('')];
      if (a in vocab && b in vocab) local.push([a, b]);
    }
    local.sort((x, y) => vocab[x[0]] - vocab[y[0]] || vocab[x[1]] - vocab[y[1]]);
    for (const pair of local) merges.push({ pair, score: scores[id] });
  });
  merges.sort((x, y) => y.score - x.score);
  const special = tokens.map((t, id) => ({ t, id })).filter(({ id }) => types[id] === 2 || types[id] === 3);
  const bos = meta<number>(g, 'tokenizer.ggml.bos_token_id');
  const unk = meta<number>(g, 'tokenizer.ggml.unknown_token_id') ?? 0;
  const addBos = meta<boolean>(g, 'tokenizer.ggml.add_bos_token') ?? true;
  const json: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special.map(({ t, id }) => ({
      id,
      content: t,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    post_processor:
      addBos && bos !== undefined
        ? {
            type: 'TemplateProcessing',
            single: [{ SpecialToken: { id: tokens[bos], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
            pair: [
              { SpecialToken: { id: tokens[bos], type_id: 0 } },
              { Sequence: { id: 'A', type_id: 0 } },
              { Sequence: { id: 'B', type_id: 1 } },
            ],
            special_tokens: { [tokens[bos]]: { id: tokens[bos], ids: [bos], tokens: [tokens[bos]] } },
          }
        : null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: tokens[unk],
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: merges.map((m) => m.pair),
    },
  };
  return { json, config: spmConfig(g) };
}

/** tokenizer_config.json's special tokens and BOS/EOS flags, from the GGUF's tokenizer keys. */
function spmConfig(g: GgufFile): Json {
  const tokens = meta<string[]>(g, 'tokenizer.ggml.tokens') ?? [];
  const bos = meta<number>(g, 'tokenizer.ggml.bos_token_id');
  const eos = meta<number>(g, 'tokenizer.ggml.eos_token_id');
  const unk = meta<number>(g, 'tokenizer.ggml.unknown_token_id');
  const chat = meta<string>(g, 'tokenizer.chat_template');
  return {
    add_bos_token: meta<boolean>(g, 'tokenizer.ggml.add_bos_token') ?? true,
    add_eos_token: meta<boolean>(g, 'tokenizer.ggml.add_eos_token') ?? false,
    ...(bos !== undefined && tokens[bos] ? { bos_token: tokens[bos] } : {}),
    ...(eos !== undefined && tokens[eos] ? { eos_token: tokens[eos] } : {}),
    ...(unk !== undefined && tokens[unk] ? { unk_token: tokens[unk] } : {}),
    ...(chat ? { chat_template: chat } : {}),
  };
}

export type GgufOutType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_1';
const OUT_TYPES: Record<GgufOutType, { type: number; fileType: number }> = {
  f32: { type: GGML.F32, fileType: 0 },
  f16: { type: GGML.F16, fileType: 1 },
  bf16: { type: GGML.BF16, fileType: 32 },
  q8_0: { type: GGML.Q8_0, fileType: 7 },
  q4_0: { type: GGML.Q4_0, fileType: 2 },
  q4_1: { type: GGML.Q4_1, fileType: 3 },
};

/** SentencePiece-style metadata from a byte-fallback BPE tokenizer.json: scores rank the merges that make each token. */
function tokenizerMetadata(tok: TextTokenizer, embed: boolean): [string, GgufValue][] {
  const tokJson = tok.definition;
  const model = tokJson.model as {
    type?: string;
    byte_fallback?: boolean;
    vocab: Record<string, number>;
    merges: (string | [string, string])[];
  };
  if (model?.type !== 'BPE' || !model.byte_fallback) {
    throw new LlmboxError(
      'GGUF export writes SentencePiece-style (byte-fallback BPE) tokenizers, as LLaMA and Mistral use',
      { field: 'tokenizer.json', fix: 'export a LLaMA/Mistral-tokenizer model, or convert with llama.cpp' },
    );
  }
  const n = Object.keys(model.vocab).length;
  const tokens = new Array<string>(n);
  for (const [t, id] of Object.entries(model.vocab)) tokens[id] = t;
  const rank = new Map<string, number>();
  model.merges.forEach((m, r) => {
    const [a, b] = typeof m === 'string' ? m.split(' ') : m;
    if (!rank.has(a + b)) rank.set(a + b, r);
  });
  const specials = new Set(
    ((tokJson.added_tokens as { id: number; special: boolean }[]) ?? []).filter((a) => a.special).map((a) => a.id),
  );
  const unk = tok.tokenToId('<unk>') ?? 0;
  const types = tokens.map((t, id) => (id === unk ? 2 : specials.has(id) ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1));
  // Tokens no merge makes (single characters, bytes) never win a merge: lowest score.
  const scores = tokens.map((t) => (rank.has(t) ? -rank.get(t)! : -1e9));
  const cfg = tok.config;
  return [
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'array', of: 'string', value: tokens }],
    ['tokenizer.ggml.scores', { type: 'array', of: 'f32', value: scores }],
    ['tokenizer.ggml.token_type', { type: 'array', of: 'i32', value: types }],
    ...(tok.bosTokenId !== undefined
      ? [['tokenizer.ggml.bos_token_id', { type: 'u32', value: tok.bosTokenId }] as [string, GgufValue]]
      : []),
    ...(tok.eosTokenId !== undefined
      ? [['tokenizer.ggml.eos_token_id', { type: 'u32', value: tok.eosTokenId }] as [string, GgufValue]]
      : []),
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: unk }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: cfg.add_bos_token !== false }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: cfg.add_eos_token === true }],
    ...(tok.chatTemplate
      ? [['tokenizer.chat_template', { type: 'string', value: tok.chatTemplate }] as [string, GgufValue]]
      : []),
    // The tokenizer itself, for readers that use it (llmbox does): the SentencePiece view above cannot hold a custom normalizer.
    ...(embed
      ? [['tokenizer.huggingface.json', { type: 'string', value: JSON.stringify(tokJson) }] as [string, GgufValue]]
      : []),
  ];
}

/** A tensor whose float32 values are made when it is written (a model larger than memory as float32). */
export interface LazyTensor {
  shape: number[];
  data: () => Float32Array;
}

export interface GgufExport {
  tensors: number;
  /** Matrices kept at a wider type than asked: rows that are not whole blocks (as llama.cpp does). Norms are always f32. */
  kept: { name: string; type: string }[];
  bytes: number;
}

/**
 * Writes a model (HF-layout weights, config and tokenizer) as a GGUF v3 file that llama.cpp loads:
 * norms stay f32, matrices take `out` (rows that are not whole 32-element blocks fall back to f16).
 */
export function writeGgufModel(
  file: string,
  m: { config: ModelConfig; raw: Map<string, RawTensor | LazyTensor>; tokenizer: TextTokenizer; name: string },
  out: GgufOutType,
  opts: { embedTokenizerJson?: boolean } = {},
): GgufExport {
  const c = m.config;
  if (c.architecture !== 'llama' && c.architecture !== 'mistral')
    throw new LlmboxError(`GGUF export of ${c.architecture} models is not supported yet`, {
      field: 'model_type',
      fix: 'export a LLaMA or Mistral model (Qwen tokenizers are byte-level BPE; Phi-3 keeps fused projections), or convert with llama.cpp',
    });
  if (c.ropeScaling && c.ropeScaling.type !== 'linear')
    throw new LlmboxError(`GGUF export with ${c.ropeScaling.type} rope scaling is not supported`, {
      field: 'rope_scaling',
    });
  const arch = 'llama';
  const want = OUT_TYPES[out];
  const u32 = (value: number): GgufValue => ({ type: 'u32', value });
  const metadata: [string, GgufValue][] = [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.name', { type: 'string', value: m.name }],
    ['general.file_type', u32(want.fileType)],
    [`${arch}.context_length`, u32(c.maxPositionEmbeddings)],
    [`${arch}.embedding_length`, u32(c.hiddenSize)],
    [`${arch}.block_count`, u32(c.numLayers)],
    [`${arch}.feed_forward_length`, u32(c.intermediateSize)],
    [`${arch}.rope.dimension_count`, u32(c.headDim)],
    [`${arch}.attention.head_count`, u32(c.numHeads)],
    [`${arch}.attention.head_count_kv`, u32(c.numKvHeads)],
    [`${arch}.attention.key_length`, u32(c.headDim)],
    [`${arch}.attention.value_length`, u32(c.headDim)],
    [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: c.normEps }],
    [`${arch}.rope.freq_base`, { type: 'f32', value: c.ropeTheta }],
    [`${arch}.vocab_size`, u32(c.vocabSize)],
    ...(c.ropeScaling
      ? ([
          [`${arch}.rope.scaling.type`, { type: 'string', value: 'linear' }],
          [`${arch}.rope.scaling.factor`, { type: 'f32', value: c.ropeScaling.factor }],
        ] as [string, GgufValue][])
      : []),
    ...tokenizerMetadata(m.tokenizer, opts.embedTokenizerJson ?? true),
  ];
  const kept: GgufExport['kept'] = [];
  const tensors: GgufTensorOut[] = [];
  // A tied head is the embedding: llama.cpp ties when output.weight is absent.
  const names = [...m.raw.keys()].filter((n) => !(c.tieWordEmbeddings && n === 'lm_head.weight'));
  const order = names.sort((a, b) => sortKey(a) - sortKey(b) || a.localeCompare(b));
  for (const name of order) {
    const t = m.raw.get(name)!;
    const gname = toGgufName(name);
    if (!gname) throw new LlmboxError(`no GGUF name for tensor ${name}`, { field: name });
    let type: number = t.shape.length === 1 ? GGML.F32 : want.type;
    const row = t.shape.at(-1)!;
    if (type !== GGML.F32 && type !== GGML.F16 && type !== GGML.BF16 && row % 32) type = GGML.F16;
    if (type !== want.type && t.shape.length > 1) kept.push({ name: gname, type: ggmlTypeName(type) });
    // Encoded as it is written: only one tensor's bytes are held at a time.
    const encode = () => {
      const values = typeof t.data === 'function' ? t.data() : t.data;
      let data = values instanceof Float32Array ? values : Float32Array.from(values);
      // A copy: the model's own weights are not to be permuted.
      if (/\.(q_proj|k_proj)\.weight$/.test(name))
        data = permuteHeads(data.slice(), name.includes('q_proj') ? c.numHeads : c.numKvHeads, t.shape[1], false);
      return encodeGgml(type, data);
    };
    tensors.push({ name: gname, dims: [...t.shape].reverse(), type, data: encode });
  }
  writeGguf(file, metadata, tensors);
  return { tensors: tensors.length, kept, bytes: tensors.reduce((a, t) => a + tensorBytes(t.type, t.dims), 0) };
}

/** llama.cpp's order: embeddings, then layer by layer, then the output norm and head. */
function sortKey(name: string): number {
  const m = /layers\.(\d+)\./.exec(name);
  if (m) return 1 + Number(m[1]);
  return name.includes('embed_tokens') ? 0 : 1e6;
}
