// Strings come from the page (counsellor_console/i18n/<lang>.json, embedded by the server).

const source = document.getElementById("strings");
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

/** Singular or plural form: `${key}_one` or `${key}_other`, with {n} filled. */
export function tn(key, n, vars = {}) {
  return t(n === 1 ? `${key}_one` : `${key}_other`, { n, ...vars });
}

/** The label of an enumerated value (`prefix.value`); `fallback` (the value) if unknown. */
export function label(prefix, value, fallback = String(value)) {
  const key = `${prefix}.${value}`;
  return key in strings ? strings[key] : fallback;
}
