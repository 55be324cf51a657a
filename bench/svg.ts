/**
 * A tiny SVG chart writer with no dependencies: grouped bars and lines over categories.
 * Pure functions from data to text, so a report is the same bytes for the same figures.
 */

export interface BarChart {
  title: string;
  unit: string;
  groups: { label: string; values: { series: string; value: number }[] }[];
}

export interface LineChart {
  title: string;
  xLabel: string;
  unit: string;
  /** Category labels along the x axis, evenly spaced. */
  x: string[];
  series: { name: string; values: (number | null)[] }[];
}

const WIDTH = 640;
const HEIGHT = 360;
const MARGIN = { left: 60, right: 130, top: 36, bottom: 48 };
const PLOT_W = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom;
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function num(n: number): string {
  return String(Math.round(n * 10) / 10);
}

/** A round axis maximum (1, 2 or 5 times a power of ten) at or above the largest value. */
export function niceMax(max: number): number {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

function text(x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${num(x)}" y="${num(y)}"${attrs ? ' ' + attrs : ''}>${escapeXml(content)}</text>`;
}

function frame(title: string, unit: string, top: number, body: string[], legend: string[]): string {
  const yAxis: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const y = MARGIN.top + PLOT_H - (PLOT_H * i) / 4;
    yAxis.push(`<line x1="${MARGIN.left}" y1="${num(y)}" x2="${MARGIN.left + PLOT_W}" y2="${num(y)}" stroke="#ddd"/>`);
    yAxis.push(text(MARGIN.left - 6, y + 4, num((top * i) / 4), 'text-anchor="end"'));
  }
  const legendItems = legend.map((name, i) => {
    const y = MARGIN.top + 14 + i * 18;
    return `<rect x="${WIDTH - MARGIN.right + 12}" y="${y - 10}" width="12" height="12" fill="${PALETTE[i % PALETTE.length]}"/>` + text(WIDTH - MARGIN.right + 30, y, name);
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#fff"/>`,
    text(WIDTH / 2, 20, title, 'text-anchor="middle" font-size="14" font-weight="bold"'),
    text(14, MARGIN.top + PLOT_H / 2, unit, `text-anchor="middle" transform="rotate(-90 14 ${num(MARGIN.top + PLOT_H / 2)})"`),
    ...yAxis,
    ...body,
    `<line x1="${MARGIN.left}" y1="${MARGIN.top + PLOT_H}" x2="${MARGIN.left + PLOT_W}" y2="${MARGIN.top + PLOT_H}" stroke="#000"/>`,
    ...legendItems,
    '</svg>',
    '',
  ].join('\n');
}

/** Grouped bars: one group per label, one bar per series, series colored alike in every group. */
export function barChart(chart: BarChart): string {
  const series = [...new Set(chart.groups.flatMap((g) => g.values.map((v) => v.series)))];
  const top = niceMax(Math.max(0, ...chart.groups.flatMap((g) => g.values.map((v) => v.value))));
  const groupW = PLOT_W / Math.max(1, chart.groups.length);
  const barW = (groupW * 0.8) / Math.max(1, series.length);
  const body: string[] = [];
  chart.groups.forEach((group, g) => {
    const x0 = MARGIN.left + g * groupW + groupW * 0.1;
    for (const { series: name, value } of group.values) {
      const s = series.indexOf(name);
      const h = (PLOT_H * value) / top;
      const x = x0 + s * barW;
      const y = MARGIN.top + PLOT_H - h;
      body.push(`<rect x="${num(x)}" y="${num(y)}" width="${num(barW)}" height="${num(h)}" fill="${PALETTE[s % PALETTE.length]}"><title>${escapeXml(`${group.label} ${name}: ${num(value)} ${chart.unit}`)}</title></rect>`);
      body.push(text(x + barW / 2, y - 3, num(value), 'text-anchor="middle" font-size="9"'));
    }
    body.push(text(MARGIN.left + g * groupW + groupW / 2, MARGIN.top + PLOT_H + 16, group.label, 'text-anchor="middle"'));
  });
  return frame(chart.title, chart.unit, top, body, series);
}

/** Lines over evenly spaced categories; a null value leaves a gap in its series. */
export function lineChart(chart: LineChart): string {
  const top = niceMax(Math.max(0, ...chart.series.flatMap((s) => s.values.filter((v): v is number => v !== null))));
  const step = chart.x.length > 1 ? PLOT_W / (chart.x.length - 1) : 0;
  const xAt = (i: number): number => MARGIN.left + (chart.x.length > 1 ? i * step : PLOT_W / 2);
  const yAt = (v: number): number => MARGIN.top + PLOT_H - (PLOT_H * v) / top;
  const body: string[] = chart.x.map((label, i) => text(xAt(i), MARGIN.top + PLOT_H + 16, label, 'text-anchor="middle"'));
  body.push(text(MARGIN.left + PLOT_W / 2, HEIGHT - 8, chart.xLabel, 'text-anchor="middle"'));
  chart.series.forEach((series, s) => {
    const color = PALETTE[s % PALETTE.length];
    const points = series.values.map((v, i) => (v === null ? null : `${num(xAt(i))},${num(yAt(v))}`));
    // Each unbroken run of values is one polyline.
    const runs: string[][] = [[]];
    for (const p of points) {
      if (p === null) runs.push([]);
      else runs[runs.length - 1].push(p);
    }
    for (const run of runs) if (run.length > 1) body.push(`<polyline points="${run.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    series.values.forEach((v, i) => {
      if (v !== null) body.push(`<circle cx="${num(xAt(i))}" cy="${num(yAt(v))}" r="3" fill="${color}"><title>${escapeXml(`${series.name} at ${chart.x[i]}: ${num(v)} ${chart.unit}`)}</title></circle>`);
    });
  });
  return frame(chart.title, chart.unit, top, body, chart.series.map((s) => s.name));
}
