// The floor's strings (counsellor_console/i18n/floor_<lang>.json, embedded by the server).

const source = document.getElementById("floor-strings");
const strings = source ? JSON.parse(source.textContent) : {};

export const lang = document.documentElement.lang === "en" ? "en" : "sq";

/** The string for `key` with {name} placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = strings[key];
  if (text === undefined) {
    console.warn("missing string", key);
    return key;
  }
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
}

export function has(key) {
  return key in strings;
}

/** The label of an enumerated value (`prefix.value`), or `fallback` if there is none. */
export function label(prefix, value, fallback = String(value)) {
  const key = `${prefix}.${value}`;
  return key in strings ? strings[key] : fallback;
}
