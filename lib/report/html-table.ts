import { DataType, type Table } from 'apache-arrow';

/** Text made safe inside HTML elements and attribute values. */
export const escapeHtml = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** A cell as text: float columns with 4 decimals throughout (0 as 0.0000, so a column lines up), integers as they are. */
function cell(v: unknown, float: boolean): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return float || !Number.isInteger(v) ? v.toFixed(4) : String(v);
  return String(v);
}

function rows(table: Table, limit: number): { names: string[]; body: string[][] } {
  const names = table.schema.fields.map((f) => f.name);
  const floats = table.schema.fields.map((f) => DataType.isFloat(f.type));
  const body: string[][] = [];
  for (let i = 0; i < Math.min(limit, table.numRows); i++) {
    const row = table.get(i)!.toJSON() as Record<string, unknown>;
    body.push(names.map((n, j) => cell(row[n], floats[j])));
  }
  return { names, body };
}

/** An Arrow table as an HTML table (numbers right-aligned, 4 decimals), for notebooks. */
export function htmlTable(table: Table, limit = 500): string {
  const { names, body } = rows(table, limit);
  // Dictionary-encoded strings have integer indices, so the type itself is asked, not its name.
  const numeric = table.schema.fields.map(
    (f) => DataType.isInt(f.type) || DataType.isFloat(f.type) || DataType.isDecimal(f.type),
  );
  const head = names.map((n) => `<th>${escapeHtml(n)}</th>`).join('');
  const trs = body
    .map(
      (r) =>
        `<tr>${r.map((c, j) => `<td${numeric[j] ? ' style="text-align:right"' : ''}>${escapeHtml(c)}</td>`).join('')}</tr>`,
    )
    .join('\n');
  const more = table.numRows > limit ? `<p>${table.numRows - limit} more rows</p>` : '';
  return `<table class="llmbox-table">\n<thead><tr>${head}</tr></thead>\n<tbody>\n${trs}\n</tbody>\n</table>${more}`;
}

/** The same table as aligned plain text (the fallback where HTML is not shown). */
export function textTable(table: Table, limit = 500): string {
  const { names, body } = rows(table, limit);
  const widths = names.map((n, j) => Math.max(n.length, ...body.map((r) => r[j].length)));
  const line = (r: string[]) =>
    r
      .map((c, j) => c.padEnd(widths[j]))
      .join('  ')
      .trimEnd();
  return [
    line(names),
    ...body.map(line),
    ...(table.numRows > limit ? [`... ${table.numRows - limit} more rows`] : []),
  ].join('\n');
}
