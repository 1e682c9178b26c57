import { Table } from 'apache-arrow';
import type { DisplayHost, LiveOutput } from '../lib/report/display.js';
import { Figure, plotlyScript } from '../lib/report/figure.js';
import { htmlTable, textTable } from '../lib/report/html-table.js';

/** A Jupyter display_data bundle: MIME type to content. */
export type MimeBundle = Record<string, string>;

export type WriteDisplayData = (
  data: { data: MimeBundle; metadata: Record<string, unknown>; transient: { display_id?: string } },
  update: boolean,
) => void;

// The running cell's display writer, set by the kernel as each cell starts: output lands in whichever
// cell is running (also after an await). Outside the kernel there is none.
let cellWriter: WriteDisplayData | null = null;

/** Where display data goes from now on (the kernel calls this as each cell starts). */
export function setCellWriter(write: WriteDisplayData | null): void {
  cellWriter = write;
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
  if (value instanceof Figure)
    return { 'text/html': figureHTML(value), 'text/plain': `Figure (${value.data.length} traces)` };
  if (value instanceof Table) return { 'text/html': htmlTable(value), 'text/plain': textTable(value) };
  if (isRich(value)) return { 'text/html': value.toHTML(), 'text/plain': String(value) };
  return null;
}

/** Shows a value in the running cell (rich where it can be); a no-op between cells. */
function showInCell(value: unknown): void {
  const data = mimeBundle(value) ?? { 'text/plain': String(value) };
  cellWriter?.({ data, metadata: {}, transient: {} }, false);
}

/** One output area of the running cell, redrawn in place by its display id. */
class CellDisplay implements LiveOutput {
  private readonly id = `llmbox-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  private shown = false;

  update(value: unknown): void {
    const write = cellWriter;
    if (!write) return;
    if (value instanceof Figure) ensurePlotly(write);
    const data =
      typeof value === 'string'
        ? { 'text/html': value, 'text/plain': value.replace(/<[^>]*>/g, '') }
        : (mimeBundle(value) ?? { 'text/plain': String(value) });
    write({ data, metadata: {}, transient: { display_id: this.id } }, this.shown);
    this.shown = true;
  }
}

/** The display host the kernel plugs into the library at start: tslab's display_data messages. */
export const cellDisplay: DisplayHost = { show: showInCell, live: () => new CellDisplay() };
