// The fleet (admins): the Docker host, totals and every running bucket's latest sample,
// refreshed every sample period.

import { call } from './api.js';
import { h, fill, bytes, when } from './ui.js';
import { user } from './app.js';

const rate = (v) => (v == null ? '—' : `${bytes(Math.round(v))}/s`);
const pct = (v) => (v == null ? '—' : `${v.toFixed(1)} %`);

/** Renders the fleet into `main`; returns its teardown. */
export function fleetView(main) {
  const body = h('div', h('p.muted', 'Loading…'));
  fill(main, h('div.bar', h('h1', 'Fleet')), body);
  let timer = null;
  if (!user() || !user().admin) {
    fill(body, h('p.error', 'Only administrators see the fleet.'));
    return () => {};
  }
  const load = async () => {
    let f;
    try {
      f = await call('GET', '/api/fleet');
    } catch (err) {
      fill(body, h('p.error', err.status === 403 ? 'Only administrators see the fleet.' : err.message));
      return;
    }
    const t = f.totals;
    fill(
      body,
      h('div.grid2', f.nodes.map((n) => h('div.card', h('h3', n.name), h('p', `${n.cpus} CPUs, ${bytes(n.memoryBytes)} memory, ${n.containersRunning} containers running`), h('p.small.muted', `Docker root ${n.dockerRoot}: ${bytes(n.diskFreeBytes)} free of ${bytes(n.diskTotalBytes)}; sampled ${when(n.at)}`)))),
      h('div.card', { id: 'fleet-totals' }, h('b', `${t.buckets} running buckets`), ` · CPU ${pct(t.cpuPercent)} · memory ${bytes(t.memoryBytes)} of ${bytes(t.memoryLimitBytes)} · in ${rate(t.rxBytesPerSec)} · out ${rate(t.txBytesPerSec)}`),
      h('div.card.table-wrap', h('table.list', { id: 'fleet' },
        h('thead', h('tr', h('th', 'Bucket'), h('th.num', 'CPU'), h('th.num', 'Memory'), h('th.num', 'In'), h('th.num', 'Out'), h('th', 'Sampled'))),
        h('tbody', f.buckets.map((b) => {
          const p = b.latest || {};
          return h('tr', { dataset: { id: b.bucketId } }, h('td', h('a', { href: `#/b/${b.bucketId}/stats` }, b.name)), h('td.num', pct(p.cpuPercent)), h('td.num', b.latest ? `${bytes(p.memoryBytes)} / ${bytes(p.memoryLimitBytes)}` : '—'), h('td.num', rate(p.rxBytesPerSec)), h('td.num', rate(p.txBytesPerSec)), h('td.small', when(p.at)));
        })))),
      h('p.small.muted', `A sample every ${f.sampleEverySecs} s.`),
    );
    timer = setTimeout(load, Math.max(5, f.sampleEverySecs) * 1000);
  };
  load();
  return () => clearTimeout(timer);
}
