// Per-tab persistence (sessionStorage): survives a reload, gone when the tab closes.
// Holds only what must survive a reload: unsent messages, unsent text, read marks, record drafts.

const PREFIX = "alo116.console.";

export function load(name, fallback) {
  try {
    const raw = sessionStorage.getItem(PREFIX + name);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

export function save(name, value) {
  try {
    if (value === undefined || value === null) sessionStorage.removeItem(PREFIX + name);
    else sessionStorage.setItem(PREFIX + name, JSON.stringify(value));
  } catch {
    // Storage full or disabled: the page still works, it just forgets on reload.
  }
}

/** Forget everything this console stored in the tab (on logout). */
export function clearAll() {
  try {
    for (const key of Object.keys(sessionStorage)) {
      if (key.startsWith(PREFIX)) sessionStorage.removeItem(key);
    }
  } catch {
    // nothing stored
  }
}

/** Preferences that outlive the tab (only non-sensitive ones, such as muting). */
export function loadPref(name, fallback) {
  try {
    const raw = localStorage.getItem(PREFIX + name);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

export function savePref(name, value) {
  try {
    localStorage.setItem(PREFIX + name, JSON.stringify(value));
  } catch {
    // ignore
  }
}
