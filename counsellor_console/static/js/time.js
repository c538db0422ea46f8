// Durations and clock times in the page's language.
import { lang, t } from "./i18n.js";

const clockFormat = new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "sq-AL", {
  hour: "2-digit",
  minute: "2-digit",
  hour12: false,
});

export function parseTime(iso) {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
}

/** "14:05" for an ISO time, "" when unparseable. */
export function clock(iso) {
  const ms = parseTime(iso);
  return ms === null ? "" : clockFormat.format(new Date(ms));
}

/** Elapsed time since `iso`, never negative (client and server clocks may differ a little). */
export function since(iso, now = Date.now()) {
  const ms = parseTime(iso);
  return ms === null ? 0 : Math.max(0, now - ms);
}

/** Compact duration: "45 s", "3 min 05 s" (under 10 min), "14 min", "1 h 05 min". */
export function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return t("dur_s", { s });
  const m = Math.floor(s / 60);
  if (m < 10) return t("dur_ms", { m, s: String(s % 60).padStart(2, "0") });
  if (m < 60) return t("dur_m", { m });
  return t("dur_hm", { h: Math.floor(m / 60), m: String(m % 60).padStart(2, "0") });
}

/** Coarse duration for "ago" phrases, updated less often: "now", "3 min", "1 h 05 min". */
export function ago(ms) {
  const m = Math.floor(ms / 60000);
  if (m < 1) return t("ago_now");
  if (m < 60) return t("ago_m", { m });
  return t("ago_hm", { h: Math.floor(m / 60), m: String(m % 60).padStart(2, "0") });
}

/**
 * Refresh the text of elements marked data-since="<iso>" data-fmt="wait|ago", so that lists
 * need not be rebuilt (and lose focus) just because time passes.
 */
export function tick(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("[data-since]")) {
    const elapsed = since(el.dataset.since, now);
    const text = el.dataset.fmt === "ago" ? t("ago", { t: ago(elapsed) }) : duration(elapsed);
    if (el.textContent !== text) el.textContent = text;
  }
}

export function startTicker(root = document) {
  tick(root);
  return setInterval(() => tick(root), 1000);
}
