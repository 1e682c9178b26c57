import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { LlmboxError } from '../errors.js';

/** A data file's text, without a UTF-8 byte-order mark; a missing file says which and how to point the task elsewhere. */
export function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (e) {
    throw new LlmboxError(`cannot read data file: ${(e as Error).message}`, {
      file,
      fix: 'point --data-dir at a folder that holds the task files',
    });
  }
}

/** One line of a JSON Lines file (0-based `index`); a broken line is reported with its file and row. */
export function parseJsonLine(line: string, index: number, file: string): Record<string, unknown> {
  try {
    // A byte-order mark opens the first line of some exports (CSV readers drop it too).
    return JSON.parse(index === 0 ? line.replace(/^\uFEFF/, '') : line);
  } catch (e) {
    throw new LlmboxError(`row ${index + 1} is not valid JSON (${(e as Error).message})`, { file });
  }
}

/** A JSON Lines file; a broken line is reported with its file and row. */
export function readJsonl(file: string): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  readText(file)
    .split('\n')
    .forEach((line, i) => {
      if (line.trim()) rows.push(parseJsonLine(line, i, file));
    });
  return rows;
}

/** A whole-file JSON document. */
export function readJson(file: string): unknown {
  try {
    return JSON.parse(readText(file));
  } catch (e) {
    if (e instanceof LlmboxError) throw e;
    throw new LlmboxError(`not valid JSON (${(e as Error).message})`, { file });
  }
}

/**
 * CSV/TSV rows as records keyed by the header (or by column index as "0", "1", ... when
 * `header` is false); quoting follows RFC 4180 and a UTF-8 byte-order mark is dropped.
 */
export function readDelimited(
  file: string,
  opts: { delimiter?: string; header?: boolean } = {},
): Record<string, string>[] {
  const text = readText(file);
  try {
    const rows = parse(text, {
      bom: true,
      delimiter: opts.delimiter ?? ',',
      relax_quotes: opts.delimiter === '\t',
      quote: opts.delimiter === '\t' ? false : '"',
      skip_empty_lines: true,
    }) as string[][];
    if (opts.header === false) return rows.map((r) => Object.fromEntries(r.map((v, i) => [String(i), v])));
    const [head, ...body] = rows;
    return body.map((r) => Object.fromEntries(head.map((h, i) => [h, r[i]])));
  } catch (e) {
    throw new LlmboxError(`cannot parse as ${opts.delimiter === '\t' ? 'TSV' : 'CSV'}: ${(e as Error).message}`, {
      file,
    });
  }
}

/** A field of a row, checked: the error names the file, row and field and what was expected. */
export function field<T>(
  row: Record<string, unknown>,
  path: string,
  check: (v: unknown) => v is T,
  expected: string,
  file: string,
  rowIndex: number,
): T {
  let v: unknown = row;
  for (const k of path.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  if (!check(v)) {
    throw new LlmboxError(
      `row ${rowIndex + 1}: field ${path} should be ${expected}, got ${JSON.stringify(v)?.slice(0, 80)}`,
      { file, field: path },
    );
  }
  return v;
}

export const isString = (v: unknown): v is string => typeof v === 'string';
export const isArray = (v: unknown): v is unknown[] => Array.isArray(v);
export const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
export const isInt = (v: unknown): v is number => Number.isInteger(v);
/** An integer written as a string (CSV cells). */
export const isIntString = (v: unknown): v is string => typeof v === 'string' && /^-?\d+$/.test(v.trim());

/**
 * A line of a text corpus, refused when it is not text: NUL bytes, or more than 1% of characters that
 * were not valid UTF-8 (a binary file trained on would give a believable loss curve).
 */
export function textLine(line: string, index: number, file: string): string {
  const bad = line.includes('\u0000') || (line.match(/\uFFFD/g)?.length ?? 0) > Math.max(1, line.length / 100);
  if (bad)
    throw new LlmboxError(`line ${index + 1} is not UTF-8 text (binary data?)`, {
      file,
      fix: 'train on text files (.txt UTF-8, .jsonl, .json, .csv, .parquet)',
    });
  return line;
}
