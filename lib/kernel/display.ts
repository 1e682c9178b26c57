import { createRequire } from 'node:module';
import { Table } from 'apache-arrow';
import { Figure, plotlyScript } from '../report/figure.js';
import { escapeHtml, htmlTable, textTable } from '../report/html-table.js';

/** A Jupyter display_data bundle: MIME type to content. */
export type MimeBundle = Record<string, string>;

type WriteDisplayData = (data: { data: MimeBundle; metadata: Record<string, unknown>; transient: { display_id?: string } }, update: boolean) => void;

/**
 * tslab keeps the current cell's display writer in a module variable; we read it at call time so
 * output lands in whichever cell is running. Outside the kernel there is none.
 */
function writer(): WriteDisplayData | null {
  try {
    const jupyter = createRequire(import.meta.url)('tslab/dist/jupyter') as { lastWriteDisplayData: WriteDisplayData | null };
    return jupyter.lastWriteDisplayData;
  } catch {
    return null;
  }
}

/** Whether code runs inside a Jupyter kernel that can show rich output. */
export function inKernel(): boolean {
  return writer() !== null;
}

// plotly.js (~4.6 MB) goes into the notebook once per kernel session; later figures wait for it.
let plotlySent = false;

/** Forgets that plotly.js was sent (a new notebook in the same process, or tests). */
export function resetPlotly(): void {
  plotlySent = false;
}

/** plotly.js as a script element the first time in the session, else nothing. */
function plotlyOnce(): string {
  if (plotlySent) return '';
  plotlySent = true;
  return `<script type="text/javascript">${plotlyScript()}</script>`;
}

function figureHTML(fig: Figure): string {
  const lib = plotlyOnce();
  return lib ? `${lib}\n${fig.toHTML()}` : fig.toHTML();
}

/**
 * Sends plotly.js as an output of its own (once), for displays that are redrawn: a redrawn output
 * replaces its content, and plotly.js must not vanish with an old frame of a live chart.
 */
function ensurePlotly(write: WriteDisplayData): void {
  const lib = plotlyOnce();
  if (lib) write({ data: { 'text/html': lib, 'text/plain': '' }, metadata: {}, transient: {} }, false);
}

interface Rich {
  toHTML(): string;
}
const isRich = (v: unknown): v is Rich => typeof (v as Rich | null)?.toHTML === 'function';

/** Whether a value has a rich (HTML) form: figures, Arrow tables, llmbox results. */
export function isDisplayable(value: unknown): boolean {
  return value instanceof Figure || value instanceof Table || isRich(value);
}

/**
 * The MIME bundle for a value, or null when it has no rich form: figures as HTML with plotly.js
 * embedded once (never the Plotly MIME type, which JupyterLab renders only with an extension),
 * Arrow tables and llmbox results as HTML tables with a plain-text fallback.
 */
export function mimeBundle(value: unknown): MimeBundle | null {
  if (value instanceof Figure) return { 'text/html': figureHTML(value), 'text/plain': `Figure (${value.data.length} traces)` };
  if (value instanceof Table) return { 'text/html': htmlTable(value), 'text/plain': textTable(value) };
  if (isRich(value)) return { 'text/html': value.toHTML(), 'text/plain': String(value) };
  return null;
}

/** Shows a value in the running cell (rich where it can be); returns false outside a kernel. */
export function show(value: unknown): boolean {
  const write = writer();
  if (!write) return false;
  const data = mimeBundle(value) ?? { 'text/plain': String(value) };
  write({ data, metadata: {}, transient: {} }, false);
  return true;
}

/** One output area that is redrawn in place: progress bars, growing charts. */
export class LiveDisplay {
  private readonly id = `llmbox-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  private shown = false;

  /** Replaces the display's content; a no-op outside a kernel. */
  update(value: unknown): void {
    const write = writer();
    if (!write) return;
    if (value instanceof Figure) ensurePlotly(write);
    const data = typeof value === 'string' ? { 'text/html': value, 'text/plain': value.replace(/<[^>]*>/g, '') } : (mimeBundle(value) ?? { 'text/plain': String(value) });
    write({ data, metadata: {}, transient: { display_id: this.id } }, this.shown);
    this.shown = true;
  }
}

/** A progress bar as HTML (the `<progress>` element, so no script is needed). */
export function progressHTML(label: string, done: number, total: number, detail = ''): string {
  const pct = total > 0 ? (100 * done) / total : 0;
  return `<div class="llmbox-progress"><progress value="${done}" max="${Math.max(total, 1)}" style="width:240px;vertical-align:middle"></progress> <code>${escapeHtml(label)}</code> ${done}/${total} (${pct.toFixed(0)}%) ${escapeHtml(detail)}</div>`;
}
