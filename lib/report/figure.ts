import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname } from 'node:path';
import { LlmboxError } from '../errors.js';
import { writeFileAtomic } from '../util/fs.js';

/** A Plotly trace or layout: plain JSON, as plotly.js takes it. */
export type PlotlyObject = Record<string, unknown>;

let plotlySource: string | undefined;
/** plotly.js itself, from the installed plotly.js-dist-min (no CDN: many users, and CI, are offline). */
export function plotlyScript(): string {
  plotlySource ??= readFileSync(createRequire(import.meta.url).resolve('plotly.js-dist-min/plotly.min.js'), 'utf8');
  return plotlySource;
}

let nextId = 0;

/**
 * A Plotly figure. `toHTML()` gives a fragment that draws it where plotly.js is already loaded (in a
 * notebook, once per page); `toStandaloneHTML()` a whole page with plotly.js inlined.
 */
export class Figure {
  readonly data: PlotlyObject[];
  readonly layout: PlotlyObject;

  constructor(data: PlotlyObject[], layout: PlotlyObject = {}) {
    this.data = data;
    this.layout = layout;
  }

  toJSON(): { data: PlotlyObject[]; layout: PlotlyObject } {
    return { data: this.data, layout: this.layout };
  }

  /** A div and the script that draws into it; needs `window.Plotly`. */
  toHTML(): string {
    const id = `llmbox-plot-${process.pid}-${nextId++}`;
    // "</" is escaped so that text inside the figure cannot close the script element.
    const spec = JSON.stringify(this.toJSON()).replace(/<\//g, '<\\/');
    return `<div id="${id}" class="llmbox-plot" style="width:100%;min-height:360px"></div>\n<script>(function(){var f=${spec};Plotly.newPlot(${JSON.stringify(id)},f.data,f.layout,{responsive:true,displaylogo:false});})();</script>`;
  }

  toStandaloneHTML(title = 'llmbox figure'): string {
    const esc = title.replace(/[<&>]/g, (c) => ({ '<': '&lt;', '&': '&amp;', '>': '&gt;' })[c]!);
    return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${esc}</title>\n<script>${plotlyScript()}</script></head>\n<body>\n${this.toHTML()}\n</body></html>\n`;
  }

  /** Writes the figure (atomically). `.html` is a standalone page; `.json` the Plotly spec. */
  save(path: string): string {
    const ext = extname(path).toLowerCase();
    if (ext === '.html') writeFileAtomic(path, this.toStandaloneHTML(String((this.layout.title as PlotlyObject | undefined)?.text ?? 'llmbox figure')));
    else if (ext === '.json') writeFileAtomic(path, JSON.stringify(this.toJSON(), null, 2));
    else throw new LlmboxError(`cannot save a figure as ${ext || '(no extension)'}`, { file: path, fix: 'use .html or .json' });
    return path;
  }
}
