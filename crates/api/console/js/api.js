// The REST API as the console uses it: the token lives in this tab's sessionStorage only (never
// in a URL or a cookie); a 401 anywhere signs the tab out.

const KEY = 'kalpana.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let unauthorized = () => {};

/** Called when the API answers 401. */
export function onUnauthorized(f) {
  unauthorized = f;
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

function auth() {
  return { Authorization: `Bearer ${token.get() || ''}` };
}

async function failure(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  let code = 'error';
  try {
    const body = await resp.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || code;
    }
  } catch (_) {
    // not JSON: keep the status line
  }
  if (resp.status === 401) unauthorized();
  return new ApiError(resp.status, code, message);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * `fetch`, tried again (up to twice, a second apart) when the network fails before any answer
 * (a Wi-Fi hand-over, a VPN coming up) and the request is safe to repeat.
 */
async function fetchRetrying(path, init, repeatable) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await fetch(path, init);
    } catch (e) {
      if (!repeatable || attempt >= 2 || (init.signal && init.signal.aborted)) throw e;
      await sleep(1000);
    }
  }
}

/** A JSON call; resolves to the answer's JSON (null for 204), rejects with an ApiError. */
export async function call(method, path, body) {
  const headers = auth();
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetchRetrying(path, init, method === 'GET');
  if (!resp.ok) throw await failure(resp);
  if (resp.status === 204) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

/** An object's bytes as a Blob (previews and downloads through the API). */
export async function blob(path) {
  const resp = await fetch(path, { headers: auth() });
  if (!resp.ok) throw await failure(resp);
  return resp.blob();
}

/** The API path of an object. */
export function objectPath(bucketId, key) {
  return `/api/buckets/${bucketId}/objects/${encodeURIComponent(key)}`;
}

/**
 * Uploads one file with progress: `{promise, abort}`. XMLHttpRequest, because fetch reports
 * no upload progress.
 */
export function upload(bucketId, key, file, onProgress) {
  let current = null;
  let aborted = false;
  const promise = (async () => {
    // A PUT of the same bytes to the same key can be repeated: one the network cut is tried
    // again, twice at most.
    for (let attempt = 0; ; attempt += 1) {
      current = uploadOnce(bucketId, key, file, onProgress);
      try {
        return await current.promise;
      } catch (e) {
        if (aborted || e.code !== 'network' || attempt >= 2) throw e;
        await sleep(1000);
      }
    }
  })();
  return {
    promise,
    abort: () => {
      aborted = true;
      if (current) current.abort();
    },
  };
}

function uploadOnce(bucketId, key, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('PUT', objectPath(bucketId, key));
    xhr.setRequestHeader('Authorization', `Bearer ${token.get() || ''}`);
    if (file.type) xhr.setRequestHeader('Content-Type', file.type);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(xhr.response);
        return;
      }
      let message = `${xhr.status} ${xhr.statusText}`;
      try {
        message = JSON.parse(xhr.responseText).error.message || message;
      } catch (_) {
        // keep the status line
      }
      if (xhr.status === 401) unauthorized();
      reject(new ApiError(xhr.status, 'upload', message));
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'the upload failed: the network answered nothing'));
    xhr.onabort = () => reject(new ApiError(0, 'aborted', 'cancelled'));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

/** Browsers set these themselves and refuse them from scripts. */
const FORBIDDEN = new Set(['content-length', 'host', 'connection', 'expect']);

/**
 * Uploads one file straight to the bucket's engine with a presigned PUT (the daemon stays out
 * of the byte path): `{promise, abort}`.
 */
export function uploadDirect(bucketId, key, file, onProgress) {
  const xhr = new XMLHttpRequest();
  let aborted = false;
  const promise = (async () => {
    const p = await call('POST', `/api/buckets/${bucketId}/presigned-upload`, {
      key,
      contentType: file.type || undefined,
      contentLength: file.size,
      expiresIn: 3600,
    });
    if (aborted) throw new ApiError(0, 'aborted', 'cancelled');
    return new Promise((resolve, reject) => {
      xhr.open(p.method || 'PUT', p.url);
      for (const [k, v] of Object.entries(p.headers || {})) {
        if (!FORBIDDEN.has(k.toLowerCase())) xhr.setRequestHeader(k, v);
      }
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress(e.loaded, e.total);
      };
      xhr.onload = () => (xhr.status >= 200 && xhr.status < 300
        ? resolve(null)
        : reject(new ApiError(xhr.status, 'upload', `the bucket refused the upload (${xhr.status})`)));
      xhr.onerror = () => reject(new ApiError(0, 'network', 'the upload failed: the bucket answered nothing'));
      xhr.onabort = () => reject(new ApiError(0, 'aborted', 'cancelled'));
      xhr.send(file);
    });
  })();
  return {
    promise,
    abort: () => {
      aborted = true;
      xhr.abort();
    },
  };
}

/**
 * Follows `/api/events` (server-sent events read with a streaming fetch, since EventSource
 * cannot send the token) and calls `onEvent` with each event; reconnects after a drop until
 * `signal` aborts.
 */
export async function follow(onEvent, signal) {
  while (!signal.aborted) {
    try {
      const resp = await fetch('/api/events', { headers: auth(), signal });
      if (!resp.ok) throw await failure(resp);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const data = frame
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).trimStart())
            .join('\n');
          if (data) {
            try {
              onEvent(JSON.parse(data));
            } catch (_) {
              // a keep-alive or a line that is not an event
            }
          }
        }
      }
    } catch (e) {
      if (signal.aborted || (e instanceof ApiError && e.status === 401)) return;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}
