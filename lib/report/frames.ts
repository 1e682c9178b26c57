import { createRequire } from 'node:module';
import type { Table } from 'apache-arrow';
import type { DataFrame } from 'danfojs';
import { LlmboxError } from '../errors.js';

const require = createRequire(import.meta.url);

/** Column name -> plain JS values (nulls kept), from an Arrow table. */
export function columns(table: Table): Record<string, unknown[]> {
  return Object.fromEntries(table.schema.fields.map((f) => [f.name, Array.from(table.getChild(f.name)!)]));
}

/**
 * A Danfo.js DataFrame of an Arrow table (danfojs, loaded on first use: importing it costs about a
 * second, which a library should not charge to users who never call this).
 */
export function toDanfo(table: Table): DataFrame {
  const dfd = require('danfojs') as typeof import('danfojs');
  return new dfd.DataFrame(columns(table));
}

/** A Polars DataFrame, where the optional nodejs-polars package is installed. */
export function toPolars(table: Table): unknown {
  let pl: { DataFrame: new (data: Record<string, unknown[]>) => unknown };
  try {
    pl = require('nodejs-polars');
  } catch {
    throw new LlmboxError('nodejs-polars is not installed', { field: 'toPolars', fix: 'npm install nodejs-polars (optional), or use toDanfo() / the Arrow table' });
  }
  return new pl.DataFrame(columns(table));
}
