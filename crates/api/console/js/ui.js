// Small DOM helpers. Text always goes in as text (never as HTML), so names and keys from the
// API cannot inject markup.

/** An element: `h('button.primary', {onclick}, 'Save')`. */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A short message at the bottom of the page. */
export function toast(message, kind = 'info') {
  const t = document.getElementById('toast');
  const item = h(`div.toast.${kind}`, message);
  t.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
}

/** 1536 → "1.5 KiB". */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** A date in the reader's locale. */
export function when(s) {
  if (!s) return '—';
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? s : d.toLocaleString();
}

/** A duration in seconds, in words (the largest unit). */
export function age(secs) {
  if (secs == null) return '—';
  for (const [unit, n] of [['day', 86400], ['hour', 3600], ['minute', 60]]) {
    if (secs >= n) {
      const v = Math.floor(secs / n);
      return `${v} ${unit}${v === 1 ? '' : 's'}`;
    }
  }
  return `${secs} second${secs === 1 ? '' : 's'}`;
}

/** A status badge. */
export function badge(status) {
  return h(`span.badge.s-${String(status).toLowerCase()}`, status);
}

/** A managed bucket's sleep, as a badge beside its status; none while it is awake. */
export function sleepBadge(b) {
  const state = b.activity && b.activity.state;
  if (!state || state === 'awake') return null;
  const title = state === 'asleep' ? 'Its container is stopped; the next request wakes it.' : 'Its container is starting for a request.';
  return h(`span.badge.s-${state}`, { title, dataset: { activity: state } }, state);
}

/**
 * A modal dialog built by `build(close)`; resolves with what `close` is given (undefined when
 * dismissed with Escape).
 */
export function modal(title, build) {
  return new Promise((resolve) => {
    const dlg = h('dialog.modal', { 'aria-label': title });
    const close = (v) => {
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    dlg.addEventListener('cancel', () => close(undefined));
    fill(dlg, h('h2', title), build(close));
    document.body.append(dlg);
    dlg.showModal();
    const first = dlg.querySelector('input, select, textarea, button');
    if (first) first.focus();
  });
}

/** A labelled field. */
export function field(label, input, hint) {
  return h('label.field', h('span', label), input, hint ? h('small.muted', hint) : null);
}

/** Copies text, saying so. */
export async function copy(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} copied`);
  } catch (_) {
    toast(`Could not copy ${what}: select it and copy by hand`, 'error');
  }
}

/** A read-only value with a copy button. */
export function copyable(value, what) {
  return h('div.copyable', h('code', value), h('button.ghost.small', { type: 'button', onclick: () => copy(value, what), 'aria-label': `Copy ${what}` }, 'Copy'));
}
