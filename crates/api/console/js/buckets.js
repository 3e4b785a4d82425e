// The bucket list: live status from the event stream, start / stop / delete, and the create
// dialog (managed or external).

import { call } from './api.js';
import { h, fill, toast, bytes, when, badge, sleepBadge, modal, field, copyable } from './ui.js';
import { onEvent } from './app.js';

/** The client-side twin of the API's bucket-name rule, so mistakes show as they are typed. */
export function nameProblem(name) {
  if (name.length < 3 || name.length > 63) return 'must be 3 to 63 characters long';
  if (!/^[a-z0-9.-]+$/.test(name)) return 'only lowercase letters, digits, hyphens and dots are allowed';
  if (!/^[a-z0-9]/.test(name) || !/[a-z0-9]$/.test(name)) return 'must start and end with a letter or digit';
  if (name.includes('..')) return 'must not contain two adjacent dots';
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) return 'must not be formatted as an IP address';
  if (name.startsWith('xn--') || name.startsWith('sthree-')) return 'must not start with xn-- or sthree-';
  return null;
}

/** Shows a secret key once, with a copy button. */
export function showSecret(title, b) {
  return modal(title, (close) =>
    h(
      'div',
      h('p', 'This secret key is shown only now. Copy it somewhere safe.'),
      field('Access key', copyable(b.accessKey, 'access key')),
      field('Secret key', copyable(b.secretKey, 'secret key')),
      h('div.actions', h('button.primary', { type: 'button', onclick: () => close() }, 'Done')),
    ),
  );
}

async function createDialog(teams) {
  const name = h('input', { id: 'new-name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const problem = h('small.error', { id: 'new-name-problem' });
  name.addEventListener('input', () => fill(problem, name.value ? nameProblem(name.value) || '' : ''));
  const kind = h('select', { id: 'new-kind' }, h('option', { value: 'managed' }, 'Managed (its own container)'), h('option', { value: 'external' }, 'External (S3, R2 or other)'));
  const engine = h('select', { id: 'new-engine' }, h('option', { value: '' }, 'Default'), h('option', { value: 'seaweedfs' }, 'SeaweedFS'), h('option', { value: 'minio' }, 'MinIO'));
  const team = h('select', { id: 'new-team' }, h('option', { value: '' }, 'Just me'), teams.map((t) => h('option', { value: t.id }, t.name)));
  const versioning = h('input', { type: 'checkbox', id: 'new-versioning' });
  const limit = h('input', { type: 'number', id: 'new-limit', min: '0', step: 'any', placeholder: 'no limit' });
  const subdomain = h('input', { id: 'new-subdomain', autocomplete: 'off', placeholder: 'derived from the name' });
  const ext = {
    provider: h('select', { id: 'ext-provider' }, h('option', { value: 's3' }, 'Amazon S3'), h('option', { value: 'r2' }, 'Cloudflare R2'), h('option', { value: 'other' }, 'Other S3')),
    bucketName: h('input', { id: 'ext-bucket', autocomplete: 'off' }),
    endpoint: h('input', { id: 'ext-endpoint', autocomplete: 'off', placeholder: 'https://… (other)' }),
    accountId: h('input', { id: 'ext-account', autocomplete: 'off', placeholder: 'R2 only' }),
    region: h('input', { id: 'ext-region', autocomplete: 'off', placeholder: 'us-east-1' }),
    accessKeyId: h('input', { id: 'ext-access', autocomplete: 'off' }),
    secretAccessKey: h('input', { id: 'ext-secret', type: 'password', autocomplete: 'off' }),
  };
  const managedPart = h('div', field('Engine', engine), field('Versioning', versioning), field('Size limit (GB)', limit), field('Subdomain', subdomain));
  const externalPart = h(
    'div',
    { hidden: true },
    field('Service', ext.provider),
    field('Bucket on the service', ext.bucketName),
    field('Endpoint', ext.endpoint),
    field('Account id', ext.accountId),
    field('Region', ext.region),
    field('Access key id', ext.accessKeyId),
    field('Secret access key', ext.secretAccessKey, 'Checked against the service before anything is saved; stored encrypted.'),
  );
  kind.addEventListener('change', () => {
    managedPart.hidden = kind.value !== 'managed';
    externalPart.hidden = kind.value === 'managed';
  });
  const error = h('p.error', { id: 'new-error', role: 'alert' });
  return modal('New bucket', (close) =>
    h(
      'form',
      {
        onsubmit: async (e) => {
          e.preventDefault();
          const bad = nameProblem(name.value);
          if (bad) {
            fill(error, `The name ${bad}.`);
            return;
          }
          const body = { name: name.value };
          if (team.value) body.teamId = team.value;
          if (kind.value === 'managed') {
            if (engine.value) body.engine = engine.value;
            if (versioning.checked) body.versioning = true;
            if (limit.value) body.maxSizeGB = Number(limit.value);
            if (subdomain.value) body.subdomain = subdomain.value;
          } else {
            body.kind = 'external';
            body.external = {};
            for (const [k, input] of Object.entries(ext)) if (input.value) body.external[k] = input.value;
          }
          const submit = e.submitter;
          if (submit) submit.disabled = true;
          fill(error, kind.value === 'external' ? 'Testing the connection…' : '');
          try {
            close(await call('POST', '/api/buckets', body));
          } catch (err) {
            fill(error, err.message);
            if (submit) submit.disabled = false;
          }
        },
      },
      field('Name', name),
      problem,
      field('Kind', kind),
      field('Team', team),
      managedPart,
      externalPart,
      error,
      h('div.actions', h('button.ghost', { type: 'button', onclick: () => close() }, 'Cancel'), h('button.primary', { type: 'submit', id: 'create' }, 'Create')),
    ),
  );
}

async function confirmDelete(b) {
  const typed = h('input', { id: 'confirm-name', autocomplete: 'off' });
  const data = h('input', { type: 'checkbox', id: 'delete-data' });
  return modal(`Delete ${b.name}?`, (close) =>
    h(
      'form',
      {
        onsubmit: (e) => {
          e.preventDefault();
          if (typed.value === b.name) close({ deleteVolume: data.checked });
        },
      },
      h('p', 'Type the bucket name to delete it.'),
      field('Name', typed),
      b.kind === 'managed' ? field('Delete its data too', data, 'Without this the volume is kept.') : null,
      h('div.actions', h('button.ghost', { type: 'button', onclick: () => close() }, 'Cancel'), h('button.danger', { type: 'submit', id: 'confirm-delete' }, 'Delete')),
    ),
  );
}

/** Renders the list into `main`; returns its teardown. */
export function bucketsView(main) {
  const rows = new Map();
  const tbody = h('tbody', { id: 'bucket-rows' });
  const empty = h('p.empty', { hidden: true }, 'No buckets yet. Create one to get an S3 endpoint of its own.');
  const filter = h('input', { type: 'search', id: 'bucket-filter', placeholder: 'Filter by name', 'aria-label': 'Filter buckets' });
  let buckets = [];

  const act = async (b, what) => {
    try {
      if (what === 'delete') {
        const answer = await confirmDelete(b);
        if (!answer) return;
        await call('DELETE', `/api/buckets/${b.id}${answer.deleteVolume ? '?deleteVolume=true' : ''}`);
        toast(`${b.name} deleted`);
        buckets = buckets.filter((x) => x.id !== b.id);
        draw();
        return;
      }
      const updated = await call('POST', `/api/buckets/${b.id}/${what}`);
      upsert(updated);
    } catch (err) {
      toast(err.message, 'error');
    }
  };

  const row = (b) =>
    h(
      'tr',
      { dataset: { id: b.id, name: b.name } },
      h('td', h('a', { href: `#/b/${b.id}` }, b.name), b.description ? h('div.muted.small', b.description) : null),
      h('td.status', badge(b.status), ' ', sleepBadge(b), b.statusMessage && b.status !== 'RUNNING' ? h('div.muted.small', b.statusMessage) : null),
      h('td', b.kind === 'external' ? `external (${b.provider || ''})` : b.engine),
      h('td.num', String(b.objectCount)),
      h('td.num', bytes(b.totalSizeBytes), b.maxSizeGB ? h('span.muted', ` / ${b.maxSizeGB} GB`) : null),
      h('td.small', when(b.createdAt)),
      h(
        'td.actions',
        b.kind === 'managed' && b.status === 'STOPPED' ? h('button.small', { type: 'button', onclick: () => act(b, 'start'), dataset: { action: 'start' } }, 'Start') : null,
        b.kind === 'managed' && b.status === 'RUNNING' ? h('button.small', { type: 'button', onclick: () => act(b, 'stop'), dataset: { action: 'stop' } }, 'Stop') : null,
        h('button.small.danger', { type: 'button', onclick: () => act(b, 'delete'), dataset: { action: 'delete' } }, 'Delete'),
      ),
    );

  const draw = () => {
    const q = filter.value.trim().toLowerCase();
    const shown = buckets.filter((b) => !q || b.name.includes(q)).sort((a, b) => a.name.localeCompare(b.name));
    rows.clear();
    fill(tbody, shown.map((b) => {
      const r = row(b);
      rows.set(b.id, r);
      return r;
    }));
    empty.hidden = buckets.length > 0;
  };

  const upsert = (b) => {
    const i = buckets.findIndex((x) => x.id === b.id);
    if (i >= 0) buckets[i] = b;
    else buckets.push(b);
    draw();
  };

  const load = async () => {
    const all = [];
    let cursor = null;
    do {
      const page = await call('GET', `/api/buckets?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      all.push(...page.buckets);
      cursor = page.nextCursor;
    } while (cursor);
    buckets = all;
    draw();
  };

  // Status changes arrive as events; the record is read again for its counters and message.
  const refreshing = new Set();
  const off = onEvent(async (ev) => {
    if (ev.kind === 'bucket.deleted') {
      buckets = buckets.filter((x) => x.id !== ev.bucketId);
      draw();
      return;
    }
    if (!ev.kind.startsWith('bucket.') || refreshing.has(ev.bucketId)) return;
    refreshing.add(ev.bucketId);
    try {
      upsert(await call('GET', `/api/buckets/${ev.bucketId}`));
    } catch (_) {
      // gone or not ours: the next load tells
    } finally {
      refreshing.delete(ev.bucketId);
    }
  });

  filter.addEventListener('input', draw);
  const create = async () => {
    let teams = [];
    try {
      teams = (await call('GET', '/api/teams')).teams || [];
    } catch (_) {
      // no teams: the dialog offers "just me"
    }
    const b = await createDialog(teams);
    if (!b) return;
    upsert(b);
    if (b.secretKey) await showSecret(`${b.name}: its credentials`, b);
  };
  fill(
    main,
    h('div.bar', h('h1', 'Buckets'), filter, h('button.primary', { type: 'button', id: 'new-bucket', onclick: create }, 'New bucket')),
    h('div.card.table-wrap', h('table.list', { id: 'buckets' }, h('thead', h('tr', h('th', 'Name'), h('th', 'Status'), h('th', 'Engine'), h('th.num', 'Objects'), h('th.num', 'Size'), h('th', 'Created'), h('th', ''))), tbody)),
    empty,
  );
  load().catch((err) => toast(err.message, 'error'));
  return off;
}
