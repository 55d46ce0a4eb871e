// The self-contained HTML report of a drill: the verdict, the numbers, and timelines of success
// rate, latency, traffic share per site and replication lag with every fault and heal marked, drawn
// by uPlot, whose script and styles are inlined (no CDN: the file works offline and in CI archives).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { DrillReport } from './report.js';

const require = createRequire(import.meta.url);

function asset(path: string): string {
  return readFileSync(require.resolve(path), 'utf8');
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** JSON safe inside a <script> element. */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');

export function renderReportHtml(r: DrillReport): string {
  const uplotJs = asset('uplot/dist/uPlot.iife.min.js');
  const uplotCss = asset('uplot/dist/uPlot.min.css');
  const verdict = r.passed ? 'PASSED' : r.inconclusive ? 'INCONCLUSIVE' : 'FAILED';
  const row = (k: string, v: string) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`;
  const classes = r.classes
    .map(
      (c) =>
        `<tr class="${c.inSlo ? '' : 'excluded'}"><td>${escapeHtml(c.className)}</td><td>${escapeHtml(c.episode)}</td><td>${c.ops}</td><td>${c.failed}</td><td>${c.rtoMs}${c.recovered ? '' : ' (not recovered)'}</td><td>${escapeHtml(c.inSlo ? 'yes' : (c.excludedWhy ?? 'no'))}</td></tr>`,
    )
    .join('\n');
  const faults = r.executedFaults
    .map((f) => `<tr><td>${f.plannedAtMs}</td><td>${f.atMs}</td><td>${f.phase}</td><td>${escapeHtml(JSON.stringify(f.action))}</td><td>${escapeHtml(f.result)}</td></tr>`)
    .join('\n');
  const list = (items: string[]) => (items.length === 0 ? '<p>none</p>' : `<ul>${items.map((i) => `<li>${escapeHtml(i)}</li>`).join('')}</ul>`);
  const b = r.badDelete;
  const badDelete =
    b === undefined
      ? ''
      : `<h2 id="bad-delete">Bulk delete and rewind</h2>
<table>
${row('deleted', `${b.deleted} of ${b.seeded} items of ${b.table}/${b.prefix}* at ${b.deleteSite}; gone from every site ${b.goneEverywhereAfterMs ?? 'n/a'} ms later`)}
${row('rewind', `${b.rewindId ?? 'n/a'} to ${b.toTime ?? 'n/a'}: ${b.rewindDone ? 'done at every site' : 'NOT done'} in ${b.rewindMs ?? 'n/a'} ms`)}
${row('restored at every site', `${b.restored} of ${b.toRestore} (the deleted items nothing wrote since; SLO: all)`)}
${row('not restored', String(b.notRestoredCount))}
${row('skipped (changed or created after T)', String(b.skippedCount))}
${row('untouched keys changed', `${b.untouchedChangedCount} of ${b.untouchedChecked} checked (SLO ${r.slo.rewind?.untouchedChangedMax ?? 0})`)}
</table>
<h3>Restored${b.restored > b.restoredKeys.length ? ` (the first ${b.restoredKeys.length} of ${b.restored})` : ''}</h3>${list(b.restoredKeys)}
<h3>Skipped</h3>${list(b.skipped.map((k) => `${k.key} [${k.class}]`))}
<h3>Not restored</h3>${list(b.notRestored.map((n) => `${n.key} at ${n.site}: ${n.why}`))}
<h3>Untouched keys changed</h3>${list(b.untouchedChanged.map((c) => `${c.key}${c.site ? ` at ${c.site}` : ''}: ${c.why}`))}`;
  const chartData = {
    sites: r.sites,
    perSecond: r.timeline.perSecond,
    lag: r.timeline.lag,
    marks: r.executedFaults.map((f) => ({ t: f.atMs / 1000, phase: f.phase, label: `${f.action.kind}${'site' in f.action ? ` ${f.action.site}` : ''}` })),
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Tandem drill ${escapeHtml(r.scenario)} (seed ${r.seed}): ${verdict}</title>
<style>${uplotCss}
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 .PASSED { color: #1a7f37; } h1 .FAILED, h1 .INCONCLUSIVE { color: #cf222e; }
table { border-collapse: collapse; margin: 8px 0 16px; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
tr.excluded td { color: #888; } code { background: #f4f4f4; padding: 2px 4px; }
.chart { margin: 12px 0 24px; } .legend-note { color: #666; font-size: 12px; }
</style></head><body>
<h1>Drill <code>${escapeHtml(r.scenario)}</code>: <span class="${verdict}">${verdict}</span></h1>
<p>Seed <b>${r.seed}</b>, victim <b>${escapeHtml(r.victim)}</b>. Replay: <code id="replay">${escapeHtml(r.meta.replayCommand)}</code></p>
<table>
${row('RTO', `${r.rtoMs} ms (SLO ${r.slo.rtoMs} ms); after the heal ${r.healRtoMs} ms`)}
${row('router detection / rerouting', `${r.detectMs ?? 'n/a'} ms / ${r.rerouteMs ?? 'n/a'} ms`)}
${row('RPO', `${r.rpo.lostAckedWrites} acknowledged writes lost (${r.rpo.lostAckedQuorumWrites} quorum, ${r.rpo.lostAckedLocalWrites} local), window ${r.rpo.windowMs} ms`)}
${row('availability', `${(r.availability * 100).toFixed(2)}% of ${r.operations} operations; ${r.clientErrors} failed, ${r.unknownOutcomes} unknown; router retries ${r.routerRetries ?? 'n/a'}`)}
${row('convergence', `${r.converged ? 'converged' : 'NOT converged'}${r.convergenceMs !== null ? `, ${r.convergenceMs} ms after the heal` : ''}`)}
${row('conflicts', `${r.conflicts} ${JSON.stringify(r.conflictsByReason)}`)}
${row('fault / heal', `${r.faultAtMs ?? 'n/a'} ms / ${r.healAtMs ?? 'n/a'} ms`)}
${row('load generator', `event loop lag max ${r.generator.eventLoopDelayMaxMs.toFixed(1)} ms, schedule lag max ${r.generator.scheduleLagMaxMs.toFixed(1)} ms, shed ${r.generator.shed}`)}
${row('machine', r.machine.cpuPressureMaxPct === null ? 'CPU pressure not reported' : `CPU pressure (PSI some avg10) up to ${r.machine.cpuPressureMaxPct}%`)}
${row('versions', `tandem ${r.meta.tandemVersion}, node ${r.meta.node}, ${r.meta.cpus} CPUs, started ${r.meta.startedAt}`)}
</table>
<h2>Why it did not pass</h2>${list(r.failures)}
${badDelete}
<h2>Timelines</h2>
<p class="legend-note">x: seconds of intended send time since the load started. Red lines: faults; green lines: heals.</p>
<div id="success" class="chart"></div>
<div id="latency" class="chart"></div>
<div id="share" class="chart"></div>
<div id="lag" class="chart"></div>
<h2>RTO per class of traffic</h2>
<table><tr><th>class</th><th>episode</th><th>ops</th><th>bad</th><th>RTO ms</th><th>in SLO</th></tr>
${classes}
</table>
<h2>Faults (planned and executed, ms)</h2>
<table><tr><th>planned</th><th>executed</th><th>phase</th><th>action</th><th>result</th></tr>
${faults}
</table>
<h2>Anomalies</h2>${list(r.anomalies.map((a) => `${a.kind}: ${a.detail}`))}
<h2>Lost acknowledged writes</h2>${list(r.rpo.lost.map((l) => `${l.writeId ?? l.id} ${l.table}/${l.key} ${l.dot} (${l.durability}, ${l.why})`))}
<script>${uplotJs}</script>
<script id="drill-data" type="application/json">${scriptJson(chartData)}</script>
<script>
(function () {
  var data = JSON.parse(document.getElementById('drill-data').textContent);
  var colors = ['#0969da', '#bf3989', '#1a7f37', '#9a6700', '#8250df', '#0a3069', '#57606a'];
  function marks() {
    return { hooks: { draw: [function (u) {
      var ctx = u.ctx; ctx.save(); ctx.lineWidth = 2;
      data.marks.forEach(function (m) {
        var x = Math.round(u.valToPos(m.t, 'x', true));
        ctx.strokeStyle = m.phase === 'fault' ? '#cf222e' : '#4ac26b';
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
        ctx.fillStyle = ctx.strokeStyle; ctx.font = '11px sans-serif'; ctx.fillText(m.label, x + 3, u.bbox.top + 12);
      });
      ctx.restore();
    }] } };
  }
  function chart(id, title, series, xs, ys, yLabel) {
    var opts = { title: title, width: 900, height: 260, plugins: [marks()], scales: { x: { time: false } },
      axes: [{ label: 'seconds' }, { label: yLabel }],
      series: [{ label: 's' }].concat(series.map(function (s, i) { return { label: s, stroke: colors[i % colors.length], width: 2, spanGaps: false }; })) };
    new uPlot(opts, [xs].concat(ys), document.getElementById(id));
  }
  var ps = data.perSecond;
  var xs = ps.map(function (p) { return p.t + 0.5; });
  chart('success', 'Success rate per second', ['routed', 'pinned'], xs,
    [ps.map(function (p) { return p.routedSuccess; }), ps.map(function (p) { return p.pinnedSuccess; })], 'share ok');
  chart('latency', 'Latency from intended send time (ms)', ['p50', 'p99'], xs,
    [ps.map(function (p) { return p.p50Ms; }), ps.map(function (p) { return p.p99Ms; })], 'ms');
  chart('share', 'Share of routed traffic per site', data.sites, xs,
    data.sites.map(function (s) { return ps.map(function (p) { return p.share[s]; }); }), 'share');
  var times = Array.from(new Set(data.lag.map(function (l) { return l.t; }))).sort(function (a, b) { return a - b; });
  var bySite = data.sites.map(function (s) {
    var m = new Map(); data.lag.forEach(function (l) { if (l.site === s) m.set(l.t, l.lagMs); });
    return times.map(function (t) { return m.has(t) ? m.get(t) : null; });
  });
  chart('lag', 'Replication lag (ms, worst peer link of each site)', data.sites, times.map(function (t) { return t / 1000; }), bySite, 'ms');
})();
</script>
</body></html>
`;
}
