import { createRequire } from 'node:module';
import { Bool, Float64, Int32, Table, Utf8, vectorFromArray } from 'apache-arrow';
import type { DataFrame } from 'danfojs';
import { LlmboxError } from '../errors.js';

const require = createRequire(import.meta.url);

export type Cell = string | number | boolean | null;

/**
 * A column's Arrow type: `count` is Int32 where every value fits and float64 where one does not (a 7B
 * model's parameter count); `int` is always Int32; `text` writes other values as strings.
 */
export type ColumnKind = 'int' | 'count' | 'float' | 'text' | 'bool';

function vector(kind: ColumnKind, values: Cell[]) {
  if (kind === 'text')
    return vectorFromArray(
      values.map((v) => (v === null ? null : String(v))),
      new Utf8(),
    );
  if (kind === 'bool') return vectorFromArray(values as (boolean | null)[], new Bool());
  const ints = kind === 'int' || (kind === 'count' && values.every((v) => v === null || (v as number) < 2 ** 31));
  return vectorFromArray(values as (number | null)[], ints ? new Int32() : new Float64());
}

/** One row per item: each column is its kind and the item's value there (null for none). */
export function itemsTable<T>(items: readonly T[], columns: Record<string, [ColumnKind, (x: T) => Cell]>): Table {
  return new Table(
    Object.fromEntries(Object.entries(columns).map(([name, [kind, f]]) => [name, vector(kind, items.map(f))])),
  );
}

/** The kind plain values call for: integers as Int32 where they fit, other numbers float64, booleans, else text. */
function kindOf(values: Cell[]): ColumnKind {
  const present = values.filter((v) => v !== null);
  if (present.every((v) => typeof v === 'boolean')) return 'bool';
  if (!present.every((v) => typeof v === 'number')) return 'text';
  return present.every((v) => Number.isInteger(v) && Math.abs(v as number) < 2 ** 31) ? 'int' : 'float';
}

/** Plain rows as an Arrow table, columns in first-seen order (a row without a column holds null there). */
export function rowsTable(rows: Record<string, Cell>[]): Table {
  const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (n: string) => (r: Record<string, Cell>) => r[n] ?? null;
  return itemsTable(rows, Object.fromEntries(names.map((n) => [n, [kindOf(rows.map(cell(n))), cell(n)]])));
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
