import { dirname, extname, join } from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { tableFromIPC } from 'apache-arrow';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { LlmboxError } from '../errors.js';
import { parseJsonLine, readDelimited, readJson, readJsonl, readText, textLine } from './files.js';
import { toRecord, type RecordFormat, type TrainingRecord } from './records.js';

export type DataRow = Record<string, unknown>;

/**
 * A data file's rows: JSON (a list), JSON Lines, CSV/TSV (header row), Parquet (hyparquet), Arrow IPC
 * (.arrow/.feather), or plain text (.txt: one `text` row per non-empty line).
 */
export async function readRows(file: string): Promise<DataRow[]> {
  const ext = extname(file).toLowerCase();
  if (ext === '.parquet') {
    emptyCheck(file);
    try {
      return (await parquetReadObjects({ file: await asyncBufferFromFile(file) })) as DataRow[];
    } catch (e) {
      throw new LlmboxError(`cannot read as Parquet: ${(e as Error).message}`, { file });
    }
  }
  return readRowsSync(file);
}

function emptyCheck(file: string): void {
  if (existsSync(file) && statSync(file).size === 0)
    throw new LlmboxError('empty file (0 bytes)', {
      file,
      fix: 'the file was not written completely: export it again',
    });
}

/** readRows for every format but Parquet (whose reader is asynchronous). */
export function readRowsSync(file: string): DataRow[] {
  const ext = extname(file).toLowerCase();
  if (ext === '.parquet') throw new Error(`readRowsSync: ${file} is Parquet, read it with readRows`);
  if (ext === '.jsonl') return readJsonl(file);
  if (ext === '.csv' || ext === '.tsv') return readDelimited(file, { delimiter: ext === '.tsv' ? '\t' : ',' });
  if (ext === '.txt')
    return readText(file)
      .split('\n')
      .map((l, i) => textLine(l, i, file))
      .filter((l) => l.trim())
      .map((text) => ({ text }));
  if (ext === '.arrow' || ext === '.feather' || ext === '.ipc') emptyCheck(file);
  if (ext === '.arrow' || ext === '.feather' || ext === '.ipc') {
    try {
      return tableFromIPC(readFileSync(file))
        .toArray()
        .map((r) => r.toJSON() as DataRow);
    } catch (e) {
      throw new LlmboxError(`cannot read as Arrow IPC: ${(e as Error).message}`, { file });
    }
  }
  if (ext === '.json') {
    const data = readJson(file);
    if (!Array.isArray(data))
      throw new LlmboxError('expected a JSON list of records', { file, fix: 'use a list, or JSON Lines (.jsonl)' });
    return data as DataRow[];
  }
  throw new LlmboxError(`unknown data file type ${ext || '(none)'}`, {
    file,
    fix: 'use .jsonl, .json, .csv, .tsv, .parquet, .arrow or .txt',
  });
}

/** One entry of LLaMA-Factory's dataset_info.json. */
export interface DatasetInfo {
  file_name: string;
  formatting?: 'alpaca' | 'sharegpt';
  ranking?: boolean;
  columns?: Partial<
    Record<
      'prompt' | 'query' | 'response' | 'history' | 'messages' | 'system' | 'tools' | 'chosen' | 'rejected' | 'text',
      string
    >
  >;
  tags?: Partial<
    Record<
      'role_tag' | 'content_tag' | 'user_tag' | 'assistant_tag' | 'observation_tag' | 'function_tag' | 'system_tag',
      string
    >
  >;
}

/** Rewrites a row described by dataset_info.json into the canonical fields `toRecord` reads. */
function canonical(row: DataRow, info: DatasetInfo): { row: DataRow; format: RecordFormat } {
  const c = info.columns ?? {};
  const get = (key: keyof NonNullable<DatasetInfo['columns']>, dflt: string) => row[c[key] ?? dflt];
  if (info.ranking) {
    return {
      row: {
        prompt: get('prompt', 'instruction'),
        chosen: get('chosen', 'chosen'),
        rejected: get('rejected', 'rejected'),
      },
      format: 'preference',
    };
  }
  if (info.formatting === 'sharegpt') {
    const t = info.tags ?? {};
    const role = t.role_tag ?? 'from',
      content = t.content_tag ?? 'value';
    const names: Record<string, string> = {
      [t.user_tag ?? 'human']: 'human',
      [t.assistant_tag ?? 'gpt']: 'gpt',
      [t.observation_tag ?? 'observation']: 'observation',
      [t.function_tag ?? 'function_call']: 'function_call',
      [t.system_tag ?? 'system']: 'system',
    };
    const turns = get('messages', 'conversations');
    const conversations = Array.isArray(turns)
      ? turns.map((m: DataRow) => ({ from: names[String(m?.[role])] ?? m?.[role], value: m?.[content] }))
      : turns;
    return {
      row: { conversations, system: get('system', 'system'), tools: get('tools', 'tools') },
      format: 'sharegpt',
    };
  }
  // Alpaca columns; a dataset with only a prompt (or text) column is pre-training text.
  const prompt = get('prompt', 'instruction'),
    response = get('response', 'output');
  if (response === undefined && typeof (prompt ?? row.text) === 'string')
    return { row: { text: prompt ?? row.text }, format: 'text' };
  return {
    row: {
      instruction: prompt,
      input: get('query', 'input'),
      output: response,
      system: get('system', 'system'),
      history: get('history', 'history'),
    },
    format: 'alpaca',
  };
}

/** A named entry of a dataset_info.json, with its file resolved beside it. */
export function datasetInfo(infoFile: string, name: string): DatasetInfo & { path: string } {
  const all = readJson(infoFile) as Record<string, DatasetInfo>;
  const info = all?.[name];
  if (!info)
    throw new LlmboxError(`no dataset named ${name}`, {
      file: infoFile,
      field: name,
      fix: `use one of: ${Object.keys(all ?? {}).join(', ')}`,
    });
  if (typeof info.file_name !== 'string')
    throw new LlmboxError(`dataset ${name} has no file_name`, { file: infoFile, field: `${name}.file_name` });
  const path = join(dirname(infoFile), info.file_name);
  if (!existsSync(path))
    throw new LlmboxError(`dataset ${name}: its file ${info.file_name} does not exist`, {
      file: path,
      field: `${name}.file_name`,
      fix: `put the file beside ${infoFile}, or correct file_name`,
    });
  return { ...info, path };
}

/**
 * Training records from a data file, or from a dataset named in `dataDir/dataset_info.json`
 * (LLaMA-Factory's convention). Every row is checked; errors name the file, row and field.
 */
export async function readRecords(
  spec: string,
  opts: { dataDir?: string } = {},
): Promise<{ name: string; file: string; records: TrainingRecord[] }> {
  if (existsSync(spec)) {
    const rows = await readRows(spec);
    return { name: spec, file: spec, records: rows.map((r, i) => toRecord(r, { file: spec, row: i })) };
  }
  const infoFile = join(opts.dataDir ?? '.', 'dataset_info.json');
  if (!existsSync(infoFile)) {
    throw new LlmboxError(
      `no data file ${spec}, and no dataset_info.json in ${opts.dataDir ?? 'the current folder'} to look the name up in`,
      { file: spec, fix: 'pass a file path, or --dataset-dir with a dataset_info.json' },
    );
  }
  const info = datasetInfo(infoFile, spec);
  const rows = await readRows(info.path);
  return {
    name: spec,
    file: info.path,
    records: rows.map((r, i) => {
      const { row, format } = canonical(r, info);
      return toRecord(row, { file: info.path, row: i }, format);
    }),
  };
}

/**
 * Records one at a time: JSON Lines and text files are read line by line (a corpus need not fit in
 * memory); other formats and dataset_info.json names are read whole, then yielded.
 */
export async function* streamRecords(
  spec: string,
  opts: { dataDir?: string } = {},
): AsyncGenerator<TrainingRecord, void, undefined> {
  const ext = extname(spec).toLowerCase();
  if (!existsSync(spec) || (ext !== '.jsonl' && ext !== '.txt')) {
    yield* (await readRecords(spec, opts)).records;
    return;
  }
  const lines = createInterface({ input: createReadStream(spec, 'utf8'), crlfDelay: Infinity });
  let row = -1;
  for await (const line of lines) {
    row++;
    if (!line.trim()) continue;
    if (ext === '.txt') {
      yield { kind: 'text', text: textLine(line, row, spec) };
      continue;
    }
    yield toRecord(parseJsonLine(line, row, spec), { file: spec, row });
  }
}
