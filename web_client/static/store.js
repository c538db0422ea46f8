// The only thing the page keeps on the device, in sessionStorage under one key: it is
// gone when the tab closes, and quick exit wipes it at once. No cookies, localStorage or
// IndexedDB, and no message text except the outbox of messages not yet sent.
const KEY = 'alo';

export function load() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || {};
  } catch {
    return {};
  }
}

export function save(state) {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(state));
  } catch {
    // Storage full or disabled: the chat still works, it just won't survive a reload.
  }
}

export function wipe() {
  try {
    sessionStorage.clear();
  } catch {
    // Nothing stored, nothing to clear.
  }
}
