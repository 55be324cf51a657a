/** The SVG chart writer: exact output for small charts, computed by hand from the layout constants. */
import t from 'tap';
import { barChart, escapeXml, lineChart, niceMax } from '../../bench/svg.js';

// Plot area: x 60..510 (450 wide), y 36..312 (276 high).
const FRAME_TOP = [
  '<svg xmlns="http://www.w3.org/2000/svg" width="640" height="360" viewBox="0 0 640 360" font-family="sans-serif" font-size="12">',
  '<rect width="640" height="360" fill="#fff"/>',
];

function gridLines(labels: string[]): string[] {
  return labels.flatMap((label, i) => {
    const y = 312 - 69 * i;
    return [`<line x1="60" y1="${y}" x2="510" y2="${y}" stroke="#ddd"/>`, `<text x="54" y="${y + 4}" text-anchor="end">${label}</text>`];
  });
}

t.test('niceMax rounds up to 1, 2 or 5 times a power of ten', async (t) => {
  t.same([niceMax(0), niceMax(-3), niceMax(1), niceMax(100), niceMax(101), niceMax(0.3), niceMax(4200), niceMax(9000)], [1, 1, 1, 100, 200, 0.5, 5000, 10000]);
});

t.test('escapeXml', async (t) => {
  t.equal(escapeXml('a<b & "c">'), 'a&lt;b &amp; &quot;c&quot;&gt;');
});

t.test('a bar chart with one group of two series', async (t) => {
  const svg = barChart({ title: 'T & co', unit: 'MB/s', groups: [{ label: 'backup', values: [{ series: 'a', value: 50 }, { series: 'b', value: 100 }] }] });
  const expected = [
    ...FRAME_TOP,
    '<text x="320" y="20" text-anchor="middle" font-size="14" font-weight="bold">T &amp; co</text>',
    '<text x="14" y="174" text-anchor="middle" transform="rotate(-90 14 174)">MB/s</text>',
    ...gridLines(['0', '25', '50', '75', '100']),
    // The group is 450 wide with 10% padding each side: two bars of 180 from x=105.
    '<rect x="105" y="174" width="180" height="138" fill="#1f77b4"><title>backup a: 50 MB/s</title></rect>',
    '<text x="195" y="171" text-anchor="middle" font-size="9">50</text>',
    '<rect x="285" y="36" width="180" height="276" fill="#ff7f0e"><title>backup b: 100 MB/s</title></rect>',
    '<text x="375" y="33" text-anchor="middle" font-size="9">100</text>',
    '<text x="285" y="328" text-anchor="middle">backup</text>',
    '<line x1="60" y1="312" x2="510" y2="312" stroke="#000"/>',
    '<rect x="522" y="40" width="12" height="12" fill="#1f77b4"/><text x="540" y="50">a</text>',
    '<rect x="522" y="58" width="12" height="12" fill="#ff7f0e"/><text x="540" y="68">b</text>',
    '</svg>',
    '',
  ].join('\n');
  t.equal(svg, expected);
});

t.test('a series keeps its color in every group, and a missing bar leaves its slot empty', async (t) => {
  const svg = barChart({
    title: 'x',
    unit: 'MB/s',
    groups: [
      { label: 'g1', values: [{ series: 'a', value: 1 }, { series: 'b', value: 2 }] },
      { label: 'g2', values: [{ series: 'b', value: 2 }] },
    ],
  });
  // Groups are 225 wide; bars 90; group 2 starts at 60 + 225 + 22.5 = 307.5, series b is the second slot.
  t.match(svg, '<rect x="397.5" y="36" width="90" height="276" fill="#ff7f0e"><title>g2 b: 2 MB/s</title></rect>');
  t.equal(svg.match(/<rect x="[\d.]+" y="[\d.]+" width="90"/g)?.length, 3);
});

t.test('a line chart with a gap in one series', async (t) => {
  const svg = lineChart({ title: 'L', xLabel: 'threads', unit: 'MB/s', x: ['1', '2', '3'], series: [{ name: 's', values: [10, null, 40] }, { name: 't', values: [5, 15, 20] }] });
  const expected = [
    ...FRAME_TOP,
    '<text x="320" y="20" text-anchor="middle" font-size="14" font-weight="bold">L</text>',
    '<text x="14" y="174" text-anchor="middle" transform="rotate(-90 14 174)">MB/s</text>',
    ...gridLines(['0', '12.5', '25', '37.5', '50']),
    '<text x="60" y="328" text-anchor="middle">1</text>',
    '<text x="285" y="328" text-anchor="middle">2</text>',
    '<text x="510" y="328" text-anchor="middle">3</text>',
    '<text x="285" y="352" text-anchor="middle">threads</text>',
    // s has no value at 2: two lone points, no line through the gap. y = 312 - 276 * v / 50.
    '<circle cx="60" cy="256.8" r="3" fill="#1f77b4"><title>s at 1: 10 MB/s</title></circle>',
    '<circle cx="510" cy="91.2" r="3" fill="#1f77b4"><title>s at 3: 40 MB/s</title></circle>',
    '<polyline points="60,284.4 285,229.2 510,201.6" fill="none" stroke="#ff7f0e" stroke-width="2"/>',
    '<circle cx="60" cy="284.4" r="3" fill="#ff7f0e"><title>t at 1: 5 MB/s</title></circle>',
    '<circle cx="285" cy="229.2" r="3" fill="#ff7f0e"><title>t at 2: 15 MB/s</title></circle>',
    '<circle cx="510" cy="201.6" r="3" fill="#ff7f0e"><title>t at 3: 20 MB/s</title></circle>',
    '<line x1="60" y1="312" x2="510" y2="312" stroke="#000"/>',
    '<rect x="522" y="40" width="12" height="12" fill="#1f77b4"/><text x="540" y="50">s</text>',
    '<rect x="522" y="58" width="12" height="12" fill="#ff7f0e"/><text x="540" y="68">t</text>',
    '</svg>',
    '',
  ].join('\n');
  t.equal(svg, expected);
});
