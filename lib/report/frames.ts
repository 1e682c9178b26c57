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
  return new (optional<typeof import('danfojs')>('danfojs', 'toDanfo', 'toPolars() / the Arrow table').DataFrame)(
    columns(table),
  );
}

/** An optional package, or an error saying how to get it and what works without it. */
function optional<T>(name: string, caller: string, instead: string): T {
  try {
    return require(name) as T;
  } catch {
    throw new LlmboxError(`${name} is not installed`, {
      field: caller,
      fix: `npm install ${name} (optional), or use ${instead}`,
    });
  }
}

/** A Polars DataFrame, where the optional nodejs-polars package is installed. */
export function toPolars(table: Table): unknown {
  const pl = optional<{ DataFrame: new (data: Record<string, unknown[]>) => unknown }>(
    'nodejs-polars',
    'toPolars',
    'toDanfo() / the Arrow table',
  );
  return new pl.DataFrame(columns(table));
}
