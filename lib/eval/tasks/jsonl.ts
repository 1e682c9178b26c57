import { readFileSync } from 'node:fs';
import { LlmboxError } from '../../errors.js';

/** Reads a JSON Lines file; a broken line is reported with its file and row. */
export function readJsonl(file: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new LlmboxError(`cannot read data file: ${(e as Error).message}`, {
      file,
      fix: 'point --data-dir at a folder that holds the task files',
    });
  }
  const rows: Record<string, unknown>[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    try {
      rows.push(JSON.parse(line));
    } catch (e) {
      throw new LlmboxError(`row ${i + 1} is not valid JSON (${(e as Error).message})`, { file });
    }
  });
  return rows;
}

/** A field of a row, checked: the error names the file, row and field and what was expected. */
export function field<T>(row: Record<string, unknown>, path: string, check: (v: unknown) => v is T, expected: string, file: string, rowIndex: number): T {
  let v: unknown = row;
  for (const k of path.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  if (!check(v)) {
    throw new LlmboxError(`row ${rowIndex + 1}: field ${path} should be ${expected}, got ${JSON.stringify(v)?.slice(0, 80)}`, { file, field: path });
  }
  return v;
}

export const isString = (v: unknown): v is string => typeof v === 'string';
export const isArray = (v: unknown): v is unknown[] => Array.isArray(v);
