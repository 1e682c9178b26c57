import { createRequire } from 'node:module';
import { Bool, Float64, Int32, Table, Utf8, vectorFromArray } from 'apache-arrow';
import type { DataFrame } from 'danfojs';
import { LlmboxError } from '../errors.js';

const require = createRequire(import.meta.url);

export type Cell = string | number | boolean | null;

/** The Arrow column for plain values: integers as Int32 where they fit, other numbers float64, booleans, else text; nulls kept. */
function column(values: Cell[]) {
  const present = values.filter((v) => v !== null);
  if (present.every((v) => typeof v === 'boolean')) return vectorFromArray(values as (boolean | null)[], new Bool());
  if (present.every((v) => typeof v === 'number')) {
    const ints = present.every((v) => Number.isInteger(v) && Math.abs(v as number) < 2 ** 31);
    return vectorFromArray(values as (number | null)[], ints ? new Int32() : new Float64());
  }
  return vectorFromArray(
    values.map((v) => (v === null ? null : String(v))),
    new Utf8(),
  );
}

/** Plain rows as an Arrow table, columns in first-seen order (a row without a column holds null there). */
export function rowsTable(rows: Record<string, Cell>[]): Table {
  const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return new Table(Object.fromEntries(names.map((n) => [n, column(rows.map((r) => r[n] ?? null))])));
}

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
