// A bucket's page: files, connection, settings, keys, snapshots and stats, one tab each.

import { call } from './api.js';
import { h, fill, toast, bytes, when, age, badge, sleepBadge, modal, field, copyable } from './ui.js';
import { onEvent } from './app.js';
import { showSecret } from './buckets.js';
import { filesPanel } from './files.js';

const TABS = [
  ['files', 'Files'],
  ['connection', 'Connection'],
  ['settings', 'Settings'],
  ['keys', 'Keys'],
  ['snapshots', 'Snapshots'],
  ['stats', 'Stats'],
];

function connection(el, b, reload) {
  const rotate = async () => {
    const ok = await modal('Rotate credentials?', (close) =>
      h('div', h('p', 'A new secret key is made and the old one stops working at once.'), h('div.actions', h('button.ghost', { type: 'button', onclick: () => close(false) }, 'Cancel'), h('button.danger', { type: 'button', onclick: () => close(true) }, 'Rotate'))),
    );
    if (!ok) return;
    try {
      const nb = await call('POST', `/api/buckets/${b.id}/credentials/rotate`);
      await showSecret(`${b.name}: new credentials`, nb);
      reload();
    } catch (err) {
      toast(err.message, 'error');
    }
  };
  fill(el, h('p.muted', 'Loading…'));
  call('GET', `/api/buckets/${b.id}/connection`)
    .then((c) =>
      fill(
        el,
        h('div.grid2', field('Endpoint', copyable(c.endpoint, 'endpoint')), field('Region', copyable(c.region, 'region')), field('Bucket', copyable(c.bucket, 'bucket name')), field('Access key', copyable(b.accessKey, 'access key'))),
        c.internalEndpoint ? field('Endpoint inside the Docker network', copyable(c.internalEndpoint, 'internal endpoint')) : null,
        h('p.muted', 'The secret key was shown once, when the bucket was made or its credentials were rotated.'),
        b.kind === 'managed' ? h('button.danger', { type: 'button', id: 'rotate', onclick: rotate }, 'Rotate credentials') : null,
        h('h3', 'AWS CLI'),
        h('pre', c.snippets.awsCli),
        h('h3', 'rclone'),
        h('pre', c.snippets.rclone),
        h('h3', 'boto3'),
        h('pre', c.snippets.boto3),
      ),
    )
    .catch((err) => fill(el, h('p.error', err.message)));
}

function settings(el, b, reload) {
  const versioning = h('input', { type: 'checkbox', id: 'set-versioning', checked: b.versioning });
  const publicAccess = h('input', { type: 'checkbox', id: 'set-public', checked: b.publicAccess });
  const encryption = h('input', { type: 'checkbox', id: 'set-encryption', checked: b.encryption });
  const limit = h('input', { type: 'number', id: 'set-limit', min: '0', step: 'any', value: b.maxSizeGB ?? '' });
  const description = h('input', { id: 'set-description', value: b.description ?? '' });
  const sleepAfter = h('input', { type: 'number', id: 'set-sleep-after', min: '0', step: '1', value: String(b.sleepAfterSecs ?? 0) });
  const error = h('p.error', { role: 'alert' });
  const managed = b.kind === 'managed';
  fill(
    el,
    h(
      'form.narrow',
      {
        onsubmit: async (e) => {
          e.preventDefault();
          const body = { description: description.value };
          if (managed) {
            // Only what changed: an S3 setting is written to the engine, which wakes a sleeping bucket.
            if (versioning.checked !== b.versioning) body.versioning = versioning.checked;
            if (publicAccess.checked !== b.publicAccess) body.publicAccess = publicAccess.checked;
            if (encryption.checked !== b.encryption) body.encryption = encryption.checked;
            if (limit.value) body.maxSizeGB = Number(limit.value);
            if (Number(sleepAfter.value) !== (b.sleepAfterSecs ?? 0)) body.sleepAfterSecs = Number(sleepAfter.value);
          }
          try {
            await call('PATCH', `/api/buckets/${b.id}`, body);
            toast('Settings saved');
            reload();
          } catch (err) {
            fill(error, err.message);
          }
        },
      },
      field('Description', description),
      managed ? [field('Versioning', versioning), field('Public read', publicAccess, 'Anyone can read objects without a key.'), field('Encryption at rest', encryption), field('Size limit (GB)', limit), field('Sleep after (seconds)', sleepAfter, 'With no request for this long its container stops; the next request wakes it. 0: never.')] : null,
      error,
      h('button.primary', { type: 'submit', id: 'save-settings' }, 'Save'),
    ),
    managed ? domainPanel(b, reload) : null,
  );
}

function domainPanel(b, reload) {
  const box = h('div.card', h('h3', 'Domain'));
  if (b.linkedHost) {
    box.append(h('p', 'Also served at ', h('code', b.linkedHost)), h('button.danger', { type: 'button', onclick: async () => {
      try {
        await call('DELETE', `/api/buckets/${b.id}/domain`);
        reload();
      } catch (err) {
        toast(err.message, 'error');
      }
    } }, 'Unlink'));
    return box;
  }
  const domain = h('select', { id: 'link-domain' });
  const sub = h('input', { id: 'link-sub', placeholder: 'files' });
  call('GET', '/api/domains')
    .then((d) => fill(domain, (Array.isArray(d) ? d : []).filter((x) => x.status === 'verified').map((x) => h('option', { value: x.id }, x.name))))
    .catch(() => {});
  box.append(
    h('p.muted', 'Serve this bucket at a subdomain of a domain you verified.'),
    h('div.row', field('Subdomain', sub), field('Domain', domain), h('button', { type: 'button', onclick: async () => {
      try {
        await call('POST', `/api/buckets/${b.id}/domain`, { domainId: domain.value, subdomain: sub.value || undefined });
        reload();
      } catch (err) {
        toast(err.message, 'error');
      }
    } }, 'Link')),
  );
  return box;
}

function keysPanel(el, b) {
  const list = h('tbody');
  const load = async () => {
    const { keys } = await call('GET', `/api/buckets/${b.id}/keys`);
    fill(list, keys.length ? keys.map((k) => h('tr', h('td', k.name), h('td', h('code', k.accessKey)), h('td', k.access), h('td', k.prefix || 'whole bucket'), h('td.small', k.expiresAt ? when(k.expiresAt) : 'never'), h('td', h('button.small.danger', { type: 'button', onclick: async () => {
      try {
        await call('DELETE', `/api/buckets/${b.id}/keys/${k.id}`);
        load();
      } catch (err) {
        toast(err.message, 'error');
      }
    } }, 'Revoke')))) : h('tr', h('td.muted', { colspan: '6' }, 'No scoped keys.')));
  };
  const name = h('input', { id: 'key-name', required: true });
  const access = h('select', { id: 'key-access' }, ['read', 'write', 'read-write'].map((a) => h('option', { value: a }, a)));
  const prefix = h('input', { id: 'key-prefix', placeholder: 'optional, e.g. agents/' });
  fill(
    el,
    h('form.row', { onsubmit: async (e) => {
      e.preventDefault();
      const body = { name: name.value, access: access.value };
      if (prefix.value) body.prefix = prefix.value;
      try {
        const k = await call('POST', `/api/buckets/${b.id}/keys`, body);
        await showSecret(`Key ${k.name}`, k);
        load();
      } catch (err) {
        toast(err.message, 'error');
      }
    } }, field('Name', name), field('Access', access), field('Prefix', prefix), h('button.primary', { type: 'submit' }, 'Make key')),
    h('table.list', h('thead', h('tr', h('th', 'Name'), h('th', 'Access key'), h('th', 'Access'), h('th', 'Prefix'), h('th', 'Expires'), h('th', ''))), list),
  );
  load().catch((err) => fill(list, h('tr', h('td.error', err.message))));
}

/** What a restore of `b` would lose: how old its latest snapshot is, and its policy. */
function protection(b) {
  const every = b.snapshotPolicy ? `every ${b.snapshotPolicy.everyHours} h (keep ${b.snapshotPolicy.keep})` : 'none';
  const latest = b.latestSnapshotAt
    ? [h('strong', `${age(b.latestSnapshotAgeSecs)} old`), ` (${when(b.latestSnapshotAt)}): a restore loses what was written since.`]
    : h('strong', 'no snapshot: nothing to restore from.');
  return h('p', { id: 'snap-protection' }, 'Latest snapshot: ', latest, h('span.muted', ` Schedule: ${every}.`));
}

function snapshotsPanel(el, b) {
  const list = h('tbody');
  const guard = h('div', protection(b));
  const act = async (method, path, done) => {
    try {
      await call(method, path);
      toast(done);
      load();
    } catch (err) {
      toast(err.message, 'error');
    }
  };
  const load = async () => {
    call('GET', `/api/buckets/${b.id}`).then((fresh) => fill(guard, protection(fresh))).catch(() => {});
    const { snapshots } = await call('GET', `/api/buckets/${b.id}/snapshots`);
    fill(list, snapshots.length ? snapshots.slice().reverse().map((s) => h('tr', h('td.small', when(s.createdAt)), h('td', badge(s.status), s.message ? h('div.small.muted', s.message) : null), h('td.num', bytes(s.sizeBytes ?? s.bytesDone)), h('td', s.restore ? [badge(s.restore.status), s.restore.message ? h('div.small.muted', s.restore.message) : null] : '—'), h('td', s.note || (s.scheduled ? 'scheduled' : '')), h('td.actions', s.status === 'DONE' ? h('button.small', { type: 'button', onclick: () => act('POST', `/api/buckets/${b.id}/snapshots/${s.id}/restore`, 'Restore started') }, 'Restore') : null, h('button.small.danger', { type: 'button', onclick: () => act('DELETE', `/api/buckets/${b.id}/snapshots/${s.id}`, 'Snapshot deleted') }, 'Delete')))) : h('tr', h('td.muted', { colspan: '6' }, 'No snapshots.')));
  };
  const target = h('select', { id: 'snap-target' });
  call('GET', '/api/buckets?limit=500').then((p) => fill(target, p.buckets.filter((x) => x.id !== b.id).map((x) => h('option', { value: x.id }, x.name)))).catch(() => {});
  const note = h('input', { id: 'snap-note', placeholder: 'optional' });
  fill(
    el,
    guard,
    h('form.row', { onsubmit: async (e) => {
      e.preventDefault();
      try {
        await call('POST', `/api/buckets/${b.id}/snapshots`, { targetBucketId: target.value || undefined, note: note.value || undefined });
        toast('Snapshot started');
        load();
      } catch (err) {
        toast(err.message, 'error');
      }
    } }, field('Into bucket', target), field('Note', note), h('button.primary', { type: 'submit' }, 'Take snapshot')),
    h('table.list', h('thead', h('tr', h('th', 'Taken'), h('th', 'Status'), h('th.num', 'Size'), h('th', 'Last restore'), h('th', 'Note'), h('th', ''))), list),
  );
  load().catch((err) => fill(list, h('tr', h('td.error', err.message))));
  const off = onEvent((ev) => {
    if (ev.bucketId === b.id && (ev.kind === 'bucket.snapshot' || ev.kind === 'bucket.restore')) load().catch(() => {});
  });
  return off;
}

function statsPanel(el, b) {
  fill(el, h('p.muted', 'Loading…'));
  call('GET', `/api/buckets/${b.id}/stats?history=1h`)
    .then((s) => {
      const c = s.container || {};
      const limit = s.maxSizeGB ? s.maxSizeGB * 1e9 : null;
      const meter = limit ? h('progress', { max: String(limit), value: String(Math.min(s.totalSizeBytes, limit)) }) : null;
      const points = s.history || [];
      fill(
        el,
        h('div.grid2',
          field('Objects', h('b', String(s.objectCount))),
          field('Size', h('span', bytes(s.totalSizeBytes), limit ? ` of ${s.maxSizeGB} GB` : ''), meter),
          field('CPU', h('b', c.cpuPercent != null ? `${c.cpuPercent.toFixed(1)} %` : '—')),
          field('Memory', h('b', c.memoryBytes != null ? `${bytes(c.memoryBytes)} of ${bytes(c.memoryLimitBytes)}` : '—'))),
        points.length ? chart(points) : h('p.muted', 'No history yet: the fleet sampler records a point every sample period.'),
        h('p.small.muted', `Counted ${when(s.lastSyncedAt)}`),
      );
    })
    .catch((err) => fill(el, h('p.error', err.message)));
}

/** Memory over time as an SVG polyline (no inline style: attributes only). */
function chart(points) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 600 120');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Memory in use over the last hour');
  const values = points.map((p) => p.memoryBytes || 0);
  const max = Math.max(...values, 1);
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', values.map((v, i) => `${(i / Math.max(values.length - 1, 1)) * 600},${120 - (v / max) * 110}`).join(' '));
  svg.append(line);
  return h('figure', svg, h('figcaption.small.muted', `Memory, last hour (peak ${bytes(max)})`));
}

/** Renders bucket `id` with `tab` open into `main`; returns its teardown. */
export function bucketView(main, id, tab, prefix) {
  let teardown = [];
  const stop = () => {
    teardown.forEach((f) => f && f());
    teardown = [];
  };
  const render = async () => {
    stop();
    let b;
    try {
      b = await call('GET', `/api/buckets/${id}`);
    } catch (err) {
      fill(main, h('p.error', err.status === 404 ? 'No such bucket (or not yours).' : err.message), h('a', { href: '#/' }, 'Back to the buckets'));
      return;
    }
    const panel = h('section.panel', { id: `tab-${tab}` });
    fill(
      main,
      h('nav.crumbs', h('a', { href: '#/' }, 'Buckets'), ' / ', h('b', b.name)),
      h('div.bar', h('h1', b.name), badge(b.status), sleepBadge(b), b.endpoint ? h('code.muted', b.endpoint) : null),
      h('nav.tabs', { role: 'tablist' }, TABS.filter(([t]) => b.kind === 'managed' || !['keys', 'snapshots'].includes(t)).map(([t, label]) => h('a', { href: `#/b/${b.id}/${t}`, role: 'tab', 'aria-selected': String(t === tab), class: t === tab ? 'active' : '' }, label))),
      panel,
    );
    if (tab === 'files') teardown.push(filesPanel(panel, b, prefix));
    else if (tab === 'connection') connection(panel, b, render);
    else if (tab === 'settings') settings(panel, b, render);
    else if (tab === 'keys') keysPanel(panel, b);
    else if (tab === 'snapshots') teardown.push(snapshotsPanel(panel, b));
    else statsPanel(panel, b);
  };
  render();
  const off = onEvent((ev) => {
    if (ev.bucketId === id && ev.kind === 'bucket.status') {
      const status = main.querySelector('.bar .badge');
      if (status) status.replaceWith(badge(ev.status));
    }
    if (ev.bucketId === id && (ev.kind === 'bucket.sleep' || ev.kind === 'bucket.wake')) {
      const old = main.querySelector('.bar [data-activity]');
      const next = sleepBadge({ activity: { state: ev.kind === 'bucket.sleep' ? 'asleep' : 'awake' } });
      if (old && next) old.replaceWith(next);
      else if (old) old.remove();
      else if (next) main.querySelector('.bar .badge')?.after(next);
    }
  });
  return () => {
    stop();
    off();
  };
}
