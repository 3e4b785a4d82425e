// The console's shell: sign-in, the event stream shared by every view, and the hash router
// (`#/` buckets, `#/b/<id>/<tab>[/<prefix>]` a bucket).

import { call, token, onUnauthorized, follow } from './api.js';
import { h, fill, field } from './ui.js';
import { bucketsView } from './buckets.js';
import { bucketView } from './bucket.js';
import { fleetView } from './fleet.js';

const main = document.getElementById('main');
let me = null;
let stream = null;
const listeners = new Set();

/** Calls `f` with every bucket event until the returned function is called. */
export function onEvent(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

/** The signed-in user. */
export function user() {
  return me;
}

function header() {
  const out = document.getElementById('signout');
  out.hidden = !me;
  document.getElementById('fleet-link').hidden = !(me && me.admin);
  fill(document.getElementById('who'), me ? `${me.name}${me.admin ? ' (admin)' : ''}` : '');
}

function stopEvents() {
  if (stream) stream.abort();
  stream = null;
}

function startEvents() {
  stopEvents();
  stream = new AbortController();
  follow((ev) => listeners.forEach((f) => f(ev)), stream.signal);
}

function signIn(message) {
  token.clear();
  me = null;
  stopEvents();
  header();
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true });
  const error = h('p.error', { id: 'signin-error', role: 'alert' }, message || '');
  const form = h(
    'form.card.signin',
    {
      onsubmit: async (e) => {
        e.preventDefault();
        token.set(input.value.trim());
        try {
          me = await call('GET', '/api/me');
        } catch (err) {
          token.clear();
          fill(error, err.status === 401 ? 'That token was not accepted: check it and try again.' : err.message);
          input.select();
          return;
        }
        started();
      },
    },
    h('h1', 'Sign in'),
    h('p.muted', 'Paste an API token. It is kept for this tab only and forgotten when the tab closes.'),
    field('API token', input),
    error,
    h('button.primary', { type: 'submit', id: 'signin' }, 'Sign in'),
  );
  fill(main, form);
  input.focus();
}

let teardown = null;

function route() {
  if (!me) return;
  if (teardown) teardown();
  teardown = null;
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  if (parts[0] === 'fleet') {
    teardown = fleetView(main);
  } else if (parts[0] === 'b' && parts[1]) {
    const prefix = parts.slice(3).map(decodeURIComponent).join('/');
    teardown = bucketView(main, parts[1], parts[2] || 'files', prefix);
  } else {
    teardown = bucketsView(main);
  }
}

function started() {
  header();
  startEvents();
  route();
}

onUnauthorized(() => {
  if (me) signIn('Your session ended or the token was revoked: sign in again.');
});

window.addEventListener('hashchange', route);
document.getElementById('signout').addEventListener('click', () => {
  signIn('Signed out.');
});

(async () => {
  if (!token.get()) {
    signIn();
    return;
  }
  try {
    me = await call('GET', '/api/me');
    started();
  } catch (_) {
    signIn();
  }
})();
