import * as tf from '@tensorflow/tfjs';
import type { PastKV } from '../models/kv-cache.js';
import type { LlamaModel } from '../models/llama.js';

/** One edge of the token tree: its tokens and their keys/values, [1, kvHeads, tokens, headDim] per layer. */
interface Node {
  tokens: number[];
  keys: tf.Tensor4D[];
  values: tf.Tensor4D[];
  children: Map<number, Node>;
  parent: Node | null;
  /** Requests in flight whose prefix runs through this edge: pinned edges are never evicted. */
  refs: number;
  lastUsed: number;
  bytes: number;
}

export interface PrefixCacheStats {
  /** Tokens whose keys/values came from the tree. */
  reusedTokens: number;
  /** Tokens encoded because no cached prefix covered them. */
  computedTokens: number;
  evictions: number;
  /** Bytes of keys/values held now. */
  bytes: number;
  nodes: number;
}

/** A prefix encoded and pinned in the tree; `past` is the caller's copy until `release()`. */
export interface HeldPrefix {
  past: PastKV | undefined;
  release(): void;
}

export interface PrefixCacheOptions {
  /** Memory budget for cached keys/values in bytes (default 512 MiB, or LLMBOX_PREFIX_CACHE_MB). */
  budgetBytes?: number;
}

/**
 * A radix tree over token ids whose edges hold the keys/values of their tokens. Any request reuses
 * the longest prefix any earlier request encoded: the few-shot prefix shared by a task (LLMBox's
 * level 1) and the context shared by an instance's options (level 2) are two cases of the same
 * lookup. Unpinned leaves are evicted least recently used first when the tree outgrows its budget.
 */
export class PrefixCache {
  private readonly model: LlamaModel;
  private readonly root: Node;
  private readonly budget: number;
  private clock = 0;
  readonly stats: PrefixCacheStats = { reusedTokens: 0, computedTokens: 0, evictions: 0, bytes: 0, nodes: 0 };

  constructor(model: LlamaModel, opts: PrefixCacheOptions = {}) {
    this.model = model;
    const envMb = Number(process.env.LLMBOX_PREFIX_CACHE_MB);
    this.budget = opts.budgetBytes ?? (Number.isFinite(envMb) && envMb > 0 ? envMb * 2 ** 20 : 512 * 2 ** 20);
    this.root = this.node([], [], [], null);
  }

  private node(tokens: number[], keys: tf.Tensor4D[], values: tf.Tensor4D[], parent: Node | null): Node {
    const bytes = [...keys, ...values].reduce((a, t) => a + t.size * 4, 0);
    return { tokens, keys, values, children: new Map(), parent, refs: 0, lastUsed: this.clock, bytes };
  }

  /** Splits `child` after `at` tokens: the head becomes a new edge between it and its parent. */
  private split(child: Node, at: number): Node {
    const parent = child.parent!;
    const cut = (ts: tf.Tensor4D[], from: number, size: number) =>
      ts.map((t) => tf.keep(tf.slice(t, [0, 0, from, 0], [-1, -1, size, -1])));
    const rest = child.tokens.length - at;
    const head = this.node(child.tokens.slice(0, at), cut(child.keys, 0, at), cut(child.values, 0, at), parent);
    const tailKeys = cut(child.keys, at, rest),
      tailValues = cut(child.values, at, rest);
    for (const t of [...child.keys, ...child.values]) t.dispose();
    head.refs = child.refs;
    head.lastUsed = child.lastUsed;
    parent.children.set(head.tokens[0], head);
    child.tokens = child.tokens.slice(at);
    child.keys = tailKeys;
    child.values = tailValues;
    child.parent = head;
    child.bytes -= head.bytes;
    head.children.set(child.tokens[0], child);
    this.stats.nodes++;
    return head;
  }

  /** The edges covering the longest cached prefix of `ids`, splitting the last one where the match ends inside it. */
  private match(ids: number[]): { path: Node[]; matched: number } {
    const path: Node[] = [];
    let node = this.root,
      at = 0;
    while (at < ids.length) {
      const child = node.children.get(ids[at]);
      if (!child) break;
      let common = 0;
      while (common < child.tokens.length && at + common < ids.length && child.tokens[common] === ids[at + common])
        common++;
      node = common < child.tokens.length ? this.split(child, common) : child;
      path.push(node);
      at += common;
    }
    return { path, matched: at };
  }

  /**
   * Encodes `ids` as a prefix, reusing whatever the tree holds and adding the rest to it. The edges
   * used stay pinned until `release()`.
   */
  acquire(ids: number[]): HeldPrefix {
    if (ids.length === 0) return { past: undefined, release: () => {} };
    const { path, matched } = this.match(ids);
    this.stats.reusedTokens += matched;
    let past = concatPast(path);
    if (matched < ids.length) {
      const rest = ids.slice(matched);
      const collect = { keys: [] as tf.Tensor4D[], values: [] as tf.Tensor4D[] };
      this.model.forward([rest], { past, collect }).dispose();
      const parent = path.length ? path[path.length - 1] : this.root;
      const added = this.node(rest, collect.keys, collect.values, parent);
      parent.children.set(rest[0], added);
      this.stats.nodes++;
      this.stats.bytes += added.bytes;
      this.stats.computedTokens += rest.length;
      path.push(added);
      disposePast(past);
      past = concatPast(path);
    }
    // A pin counts on every edge from the root to the deepest one, walked through parent links at
    // release, so edges that later splits insert above it are covered too.
    const deepest = path[path.length - 1];
    const tick = ++this.clock;
    for (let n: Node | null = deepest; n && n !== this.root; n = n.parent) {
      n.refs++;
      n.lastUsed = tick;
    }
    this.evict();
    let released = false;
    return {
      past,
      release: () => {
        if (released) return;
        released = true;
        for (let n: Node | null = deepest; n && n !== this.root; n = n.parent) n.refs--;
        disposePast(past);
        this.evict();
      },
    };
  }

  /** Drops least recently used unpinned leaves until the tree fits its budget. */
  private evict(): void {
    if (this.stats.bytes <= this.budget) return;
    const leaves: Node[] = [];
    const walk = (n: Node) => {
      for (const c of n.children.values()) {
        if (c.children.size === 0) {
          if (c.refs === 0) leaves.push(c);
        } else walk(c);
      }
    };
    walk(this.root);
    leaves.sort((a, b) => a.lastUsed - b.lastUsed);
    while (this.stats.bytes > this.budget && leaves.length) {
      const leaf = leaves.shift()!;
      this.remove(leaf);
      const parent = leaf.parent!;
      if (parent !== this.root && parent.children.size === 0 && parent.refs === 0) {
        // The parent became a leaf: it competes by its own recency.
        const at = leaves.findIndex((l) => l.lastUsed > parent.lastUsed);
        leaves.splice(at < 0 ? leaves.length : at, 0, parent);
      }
    }
  }

  private remove(n: Node): void {
    n.parent!.children.delete(n.tokens[0]);
    for (const t of [...n.keys, ...n.values]) t.dispose();
    this.stats.bytes -= n.bytes;
    this.stats.nodes--;
    this.stats.evictions++;
  }

  /** Frees every cached edge (pinned ones too: call only when no request is in flight). */
  clear(): void {
    const walk = (n: Node) => {
      for (const c of n.children.values()) {
        walk(c);
        for (const t of [...c.keys, ...c.values]) t.dispose();
      }
      n.children.clear();
    };
    walk(this.root);
    this.stats.bytes = 0;
    this.stats.nodes = 0;
  }
}

/** The caller's own copy of a path's keys/values, so later splits and evictions cannot touch it. */
function concatPast(path: Node[]): PastKV | undefined {
  if (path.length === 0) return undefined;
  const layers = path[0].keys.length;
  const join = (pick: (n: Node) => tf.Tensor4D[]) =>
    Array.from({ length: layers }, (_, l) =>
      tf.keep(
        path.length === 1
          ? tf.clone(pick(path[0])[l])
          : tf.concat(
              path.map((n) => pick(n)[l]),
              2,
            ),
      ),
    );
  return {
    length: path.reduce((a, n) => a + n.tokens.length, 0),
    keys: join((n) => n.keys),
    values: join((n) => n.values),
  };
}

function disposePast(p: PastKV | undefined): void {
  if (p) for (const t of [...p.keys, ...p.values]) t.dispose();
}
