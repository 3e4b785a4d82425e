// The file browser of one bucket: folders by prefix with a breadcrumb, paging by cursor, filter
// and sort, uploads of files and whole folders (picker or drag and drop) each with progress and
// cancel, download and share links (presigned), preview, rename/move, delete, new folder.

import { call, upload, uploadDirect, blob, objectPath } from './api.js';
import { h, fill, toast, bytes, when, modal, field, copyable } from './ui.js';

const PAGE = 1000;
// Files from this size go straight to the engine with a presigned PUT.
const DIRECT_FROM = 8 * 1024 * 1024;
const PREVIEW_TEXT_MAX = 256 * 1024;

function kindOf(key) {
  const ext = key.toLowerCase().split('.').pop();
  if (['png', 'jpg', 'jpeg', 'gif', 'webp', 'svg', 'bmp', 'avif'].includes(ext)) return 'image';
  if (['mp4', 'webm', 'ogv', 'mov'].includes(ext)) return 'video';
  if (['mp3', 'wav', 'ogg', 'oga', 'flac', 'm4a'].includes(ext)) return 'audio';
  if (ext === 'pdf') return 'pdf';
  if (['txt', 'md', 'json', 'csv', 'log', 'yaml', 'yml', 'toml', 'xml', 'html', 'css', 'js', 'ts', 'rs', 'py', 'sh', 'ini', 'conf'].includes(ext)) return 'text';
  return null;
}

// The type a preview's bytes are shown as, from the key's extension: never the type stored with
// the object, so an object stored as text/html cannot render as a page in the console's origin.
const MEDIA_TYPES = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  svg: 'image/svg+xml', bmp: 'image/bmp', avif: 'image/avif',
  mp4: 'video/mp4', webm: 'video/webm', ogv: 'video/ogg', mov: 'video/quicktime',
  mp3: 'audio/mpeg', wav: 'audio/wav', ogg: 'audio/ogg', oga: 'audio/ogg', flac: 'audio/flac', m4a: 'audio/mp4',
  pdf: 'application/pdf',
};

/** Whether the bytes start as a PDF does (`%PDF-`). */
async function isPdf(data) {
  const head = new Uint8Array(await data.slice(0, 5).arrayBuffer());
  return String.fromCharCode(...head) === '%PDF-';
}

function folderHash(b, prefix) {
  return `#/b/${b.id}/files/${prefix.split('/').filter(Boolean).map(encodeURIComponent).join('/')}`;
}

/** Every file under a dropped directory entry, with its path. */
async function walk(entry, path, out) {
  if (entry.isFile) {
    const file = await new Promise((res, rej) => entry.file(res, rej));
    out.push({ file, path: path + file.name });
    return;
  }
  const reader = entry.createReader();
  for (;;) {
    const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
    if (!batch.length) break;
    for (const e of batch) await walk(e, `${path}${entry.name}/`, out);
  }
}

/** Renders the browser of `b` at `prefix` into `el`; returns its teardown. */
export function filesPanel(el, b, prefixIn) {
  let prefix = prefixIn ? `${prefixIn.replace(/\/+$/, '')}/` : '';
  let objects = [];
  let folders = [];
  let cursor = null;
  let sort = { by: 'name', desc: false };
  const selected = new Set();
  const active = new Set();

  const tbody = h('tbody', { id: 'files' });
  const more = h('button.ghost', { type: 'button', id: 'more', hidden: true, onclick: () => load(false) }, 'Load more');
  const filter = h('input', { type: 'search', id: 'file-filter', placeholder: 'Filter this folder', 'aria-label': 'Filter this folder' });
  const uploads = h('div.uploads', { id: 'uploads' });
  const removeSelected = h('button.danger', { type: 'button', id: 'delete-selected', disabled: true, onclick: () => removeMany([...selected]) }, 'Delete selected');
  const fileInput = h('input', { type: 'file', id: 'upload-files', multiple: true, hidden: true });
  const folderInput = h('input', { type: 'file', id: 'upload-folder', multiple: true, webkitdirectory: true, hidden: true });
  const drop = h('div.drop', { id: 'dropzone', tabindex: '0' }, 'Drop files or folders here to upload them to ', h('code', `/${prefix}`));

  const crumbs = () => {
    const parts = prefix.split('/').filter(Boolean);
    const items = [h('a', { href: folderHash(b, '') }, b.name)];
    parts.forEach((p, i) => items.push(' / ', h('a', { href: folderHash(b, parts.slice(0, i + 1).join('/')) }, p)));
    return h('nav.crumbs', { id: 'breadcrumb', 'aria-label': 'Folder' }, items);
  };

  const draw = () => {
    const q = filter.value.trim().toLowerCase();
    const name = (k) => k.slice(prefix.length);
    const cmp = {
      name: (a, c) => name(a.key).localeCompare(name(c.key)),
      size: (a, c) => a.size - c.size,
      date: (a, c) => String(a.lastModified).localeCompare(String(c.lastModified)),
    }[sort.by];
    const shown = objects.filter((o) => !q || name(o.key).toLowerCase().includes(q) && !o.key.endsWith('/')).filter((o) => o.key !== prefix).sort((a, c) => (sort.desc ? -cmp(a, c) : cmp(a, c)));
    const dirs = folders.filter((f) => !q || name(f).toLowerCase().includes(q)).sort((a, c) => (sort.by === 'name' && sort.desc ? c.localeCompare(a) : a.localeCompare(c)));
    fill(
      tbody,
      dirs.map((f) => h('tr.folder', { dataset: { prefix: f } }, h('td'), h('td', h('a.folder', { href: folderHash(b, f) }, `${name(f)}`)), h('td.num', '—'), h('td', ''), h('td'))),
      shown.map((o) =>
        h(
          'tr',
          { dataset: { key: o.key, size: String(o.size) } },
          h('td', h('input', { type: 'checkbox', 'aria-label': `Select ${name(o.key)}`, checked: selected.has(o.key), onchange: (e) => {
            if (e.target.checked) selected.add(o.key);
            else selected.delete(o.key);
            removeSelected.disabled = selected.size === 0;
          } })),
          h('td.name', kindOf(o.key) ? h('button.link', { type: 'button', dataset: { action: 'preview' }, onclick: () => preview(o) }, name(o.key)) : h('span', name(o.key))),
          h('td.num.size', bytes(o.size)),
          h('td.small', when(o.lastModified)),
          h(
            'td.actions',
            h('button.small', { type: 'button', dataset: { action: 'download' }, onclick: () => download(o) }, 'Download'),
            h('button.small', { type: 'button', dataset: { action: 'share' }, onclick: () => share(o) }, 'Share'),
            h('button.small', { type: 'button', dataset: { action: 'rename' }, onclick: () => rename(o) }, 'Rename'),
            h('button.small.danger', { type: 'button', dataset: { action: 'delete' }, onclick: () => removeMany([o.key]) }, 'Delete'),
          ),
        ),
      ),
      !dirs.length && !shown.length ? h('tr', h('td.empty', { colspan: '5' }, q ? 'Nothing here matches the filter.' : 'This folder is empty. Drop files here or use Upload.')) : null,
    );
    more.hidden = !cursor;
  };

  const load = async (fresh = true) => {
    if (fresh) {
      objects = [];
      folders = [];
      cursor = null;
      selected.clear();
      removeSelected.disabled = true;
    }
    const q = new URLSearchParams({ delimiter: '/', limit: String(PAGE) });
    if (prefix) q.set('prefix', prefix);
    if (cursor) q.set('cursor', cursor);
    try {
      const page = await call('GET', `/api/buckets/${b.id}/objects?${q}`);
      objects.push(...page.objects);
      folders.push(...page.prefixes);
      cursor = page.nextCursor;
      draw();
    } catch (err) {
      fill(tbody, h('tr', h('td.error', { colspan: '5' }, err.message)));
    }
  };

  const send = (items) => {
    if (b.status !== 'RUNNING') {
      toast(`${b.name} is ${b.status}: start it to upload`, 'error');
      return;
    }
    let pending = items.length;
    for (const { file, path } of items) {
      const key = prefix + path;
      const bar = h('progress', { max: String(file.size || 1), value: '0' });
      const label = h('span.small', `${path} (${bytes(file.size)})`);
      const row = h('div.upload', { dataset: { key } }, label, bar);
      const direct = file.size >= DIRECT_FROM && b.kind === 'managed';
      const job = (direct ? uploadDirect : upload)(b.id, key, file, (done) => {
        bar.value = done;
      });
      const cancel = h('button.small.ghost', { type: 'button', onclick: () => job.abort() }, 'Cancel');
      row.append(cancel);
      uploads.append(row);
      active.add(job);
      job.promise
        .then(() => {
          bar.value = file.size || 1;
          row.classList.add('done');
          cancel.remove();
          setTimeout(() => row.remove(), 3000);
        })
        .catch((err) => {
          row.classList.add('failed');
          cancel.remove();
          row.append(h('span.error.small', err.message));
        })
        .finally(() => {
          active.delete(job);
          pending -= 1;
          if (pending === 0) load();
        });
    }
  };

  const fromFiles = (list) => [...list].map((file) => ({ file, path: file.webkitRelativePath || file.name }));

  const download = async (o) => {
    try {
      const p = await call('POST', `/api/buckets/${b.id}/presigned-download`, { key: o.key, expiresIn: 300 });
      const a = h('a', { href: p.url, download: o.key.split('/').pop(), id: 'download-link', hidden: true });
      document.body.append(a);
      a.click();
      setTimeout(() => a.remove(), 60000);
    } catch (err) {
      toast(err.message, 'error');
    }
  };

  const share = async (o) => {
    const expiry = h('select', { id: 'share-expiry' }, [[3600, '1 hour'], [86400, '1 day'], [604800, '7 days'], [300, '5 minutes']].map(([s, l]) => h('option', { value: String(s) }, l)));
    const out = h('div', { id: 'share-out' });
    await modal(`Share ${o.key.split('/').pop()}`, (close) =>
      h(
        'form',
        {
          onsubmit: async (e) => {
            e.preventDefault();
            try {
              const p = await call('POST', `/api/buckets/${b.id}/presigned-download`, { key: o.key, expiresIn: Number(expiry.value) });
              fill(out, h('p.small', `Anyone with this link can download the file until ${when(p.expiresAt)}.`), copyable(p.url, 'link'), h('input', { type: 'hidden', id: 'share-url', value: p.url }));
            } catch (err) {
              fill(out, h('p.error', err.message));
            }
          },
        },
        field('Link lasts', expiry),
        out,
        h('div.actions', h('button.ghost', { type: 'button', onclick: () => close() }, 'Close'), h('button.primary', { type: 'submit', id: 'make-link' }, 'Make link')),
      ),
    );
  };

  const rename = async (o) => {
    const input = h('input', { id: 'rename-to', value: o.key });
    const error = h('p.error', { role: 'alert' });
    const done = await modal('Rename or move', (close) =>
      h(
        'form',
        {
          onsubmit: async (e) => {
            e.preventDefault();
            const to = input.value.trim();
            if (!to || to === o.key) return close(false);
            try {
              await call('POST', `${objectPath(b.id, o.key)}/copy`, { destinationKey: to, move: true });
              close(true);
            } catch (err) {
              fill(error, err.message);
            }
          },
        },
        field('New key (a path with / moves it into that folder)', input),
        error,
        h('div.actions', h('button.ghost', { type: 'button', onclick: () => close(false) }, 'Cancel'), h('button.primary', { type: 'submit', id: 'rename-save' }, 'Rename')),
      ),
    );
    if (done) {
      toast('Renamed');
      load();
    }
  };

  const removeMany = async (keys) => {
    const ok = await modal(keys.length === 1 ? 'Delete this file?' : `Delete ${keys.length} files?`, (close) =>
      h('div', h('ul.small', keys.slice(0, 10).map((k) => h('li', k)), keys.length > 10 ? h('li', `and ${keys.length - 10} more`) : null), h('div.actions', h('button.ghost', { type: 'button', onclick: () => close(false) }, 'Cancel'), h('button.danger', { type: 'button', id: 'confirm-delete-files', onclick: () => close(true) }, 'Delete'))),
    );
    if (!ok) return;
    const failed = [];
    for (const k of keys) {
      try {
        await call('DELETE', objectPath(b.id, k));
      } catch (err) {
        failed.push(`${k}: ${err.message}`);
      }
    }
    if (failed.length) toast(`Not deleted: ${failed.join('; ')}`, 'error');
    else toast(keys.length === 1 ? 'Deleted' : `${keys.length} files deleted`);
    load();
  };

  const newFolder = async () => {
    const input = h('input', { id: 'folder-name', required: true });
    const name = await modal('New folder', (close) =>
      h('form', { onsubmit: (e) => {
        e.preventDefault();
        close(input.value.trim().replace(/^\/+|\/+$/g, ''));
      } }, field('Name', input), h('div.actions', h('button.ghost', { type: 'button', onclick: () => close() }, 'Cancel'), h('button.primary', { type: 'submit' }, 'Open'))),
    );
    if (name) location.hash = folderHash(b, prefix + name);
  };

  const preview = async (o) => {
    const kind = kindOf(o.key);
    const body = h('div.preview', { id: 'preview' }, h('p.muted', 'Loading…'));
    let url = null;
    modal(o.key.split('/').pop(), (close) => h('div', body, h('div.actions', h('button.primary', { type: 'button', onclick: () => {
      if (url) URL.revokeObjectURL(url);
      close();
    } }, 'Close'))));
    try {
      if (kind === 'text') {
        const data = await blob(objectPath(b.id, o.key));
        const text = await data.slice(0, PREVIEW_TEXT_MAX).text();
        fill(body, h('pre', text), data.size > PREVIEW_TEXT_MAX ? h('p.small.muted', `First ${bytes(PREVIEW_TEXT_MAX)} of ${bytes(data.size)}`) : null);
        return;
      }
      const data = await blob(objectPath(b.id, o.key));
      if (kind === 'pdf' && !(await isPdf(data))) {
        fill(body, h('p.error', 'This file is not a PDF; download it to open it.'));
        return;
      }
      // Re-typed by extension: the browser shows image, media or PDF bytes, never a document.
      const type = MEDIA_TYPES[o.key.toLowerCase().split('.').pop()];
      url = URL.createObjectURL(new Blob([data], { type }));
      const media = {
        image: () => h('img', { src: url, alt: o.key }),
        video: () => h('video', { src: url, controls: true }),
        audio: () => h('audio', { src: url, controls: true }),
        // Sandboxed: no script, no same-origin access, whatever the viewer makes of the bytes.
        pdf: () => h('iframe', { src: url, title: o.key, sandbox: '' }),
      }[kind];
      fill(body, media());
    } catch (err) {
      fill(body, h('p.error', err.message));
    }
  };

  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const items = [...(e.dataTransfer.items || [])];
    const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null)).filter(Boolean);
    if (entries.length && entries.some((en) => en.isDirectory)) {
      const out = [];
      for (const en of entries) await walk(en, '', out);
      send(out);
    } else {
      send(fromFiles(e.dataTransfer.files));
    }
  });
  fileInput.addEventListener('change', () => {
    send(fromFiles(fileInput.files));
    fileInput.value = '';
  });
  folderInput.addEventListener('change', () => {
    send(fromFiles(folderInput.files));
    folderInput.value = '';
  });
  filter.addEventListener('input', draw);
  const sorter = (by, label, cls = '') =>
    h(`th${cls}`, h('button.link', { type: 'button', dataset: { sort: by }, onclick: () => {
      sort = { by, desc: sort.by === by ? !sort.desc : false };
      draw();
    } }, label));

  fill(
    el,
    crumbs(),
    h(
      'div.bar',
      filter,
      h('button.primary', { type: 'button', onclick: () => fileInput.click() }, 'Upload files'),
      h('button', { type: 'button', onclick: () => folderInput.click() }, 'Upload folder'),
      h('button', { type: 'button', id: 'new-folder', onclick: newFolder }, 'New folder'),
      removeSelected,
      fileInput,
      folderInput,
    ),
    drop,
    uploads,
    h('div.card.table-wrap', h('table.list', h('thead', h('tr', h('th', ''), sorter('name', 'Name'), sorter('size', 'Size', '.num'), sorter('date', 'Modified'), h('th', ''))), tbody)),
    more,
  );
  load();
  return () => active.forEach((j) => j.abort());
}
