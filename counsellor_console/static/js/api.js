// The staff JSON API: same-origin fetches with the session cookie. Every answer is
// {ok, status, data, error, field, message}; a network failure is status 0, error "offline".

async function call(method, path, body) {
  // keepalive: a save started as the page goes away (reload, close) still completes.
  const init = { method, credentials: "same-origin", keepalive: method !== "GET", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    return { ok: false, status: 0, data: null, error: "offline", field: null, message: "" };
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (res.ok) return { ok: true, status: res.status, data, error: null, field: null, message: "" };
  return {
    ok: false,
    status: res.status,
    data,
    error: (data && data.error) || `http_${res.status}`,
    field: (data && data.field) || null,
    message: (data && data.message) || "",
  };
}

export const api = {
  get: (path) => call("GET", path),
  put: (path, body) => call("PUT", path, body),
  post: (path, body = {}) => call("POST", path, body),
};
