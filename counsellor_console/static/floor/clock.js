// Server time and ticking durations. Ages are counted against the server's clock (learnt
// from each floor frame), so a computer whose clock is off still shows true waits.
import { lang, t } from "./i18n.js";

let skew = 0; // server time minus this computer's time, in ms
const JUST_NOW_MS = 10000;

const clockFormat = new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "sq-AL", {
  hour: "2-digit",
  minute: "2-digit",
  hour12: false,
});
export function syncTo(serverIso) {
  const ms = Date.parse(serverIso);
  if (!Number.isNaN(ms)) skew = ms - Date.now();
}

export function now() {
  return Date.now() + skew;
}

/** Milliseconds since `iso` by the server's clock, never negative; null if unparseable. */
export function elapsed(iso, at = now()) {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : Math.max(0, at - ms);
}

/** "45 s", "3 min 05 s" (under 10 min), "14 min", "1 h 05 min". */
export function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return t("dur_s", { s });
  const m = Math.floor(s / 60);
  if (m < 10) return t("dur_ms", { m, s: String(s % 60).padStart(2, "0") });
  if (m < 60) return t("dur_m", { m });
  return t("dur_hm", { h: Math.floor(m / 60), m: String(m % 60).padStart(2, "0") });
}

export function clock(iso) {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? "" : clockFormat.format(new Date(ms));
}

/** "30.11.2026 18:58" (Albanian) or "30/11/2026 18:58": day first, 24-hour, in both. */
export function dayAndTime(iso) {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return "";
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, "0");
  const sep = lang === "en" ? "/" : ".";
  const day = [two(d.getDate()), two(d.getMonth() + 1), d.getFullYear()].join(sep);
  return `${day} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

/**
 * Mark an element to tick: it shows the time since `iso` ("ago" phrasing with fmt "ago"),
 * and takes data-level "warn"/"alarm" past those many seconds (so does its row, if `row`).
 */
export function ticking(el, iso, { fmt = "", warn = 0, alarm = 0, row = false } = {}) {
  if (!iso) {
    delete el.dataset.since;
    delete el.dataset.level;
    return;
  }
  el.dataset.since = iso;
  el.dataset.fmt = fmt;
  el.dataset.warn = String(warn);
  el.dataset.alarm = String(alarm);
  el.dataset.row = row ? "1" : "";
  update(el, now());
}

function update(el, at) {
  const ms = elapsed(el.dataset.since, at);
  if (ms === null) return;
  let text = duration(ms);
  if (el.dataset.fmt === "ago") text = ms < JUST_NOW_MS ? t("just_now") : t("ago", { t: text });
  if (el.textContent !== text) el.textContent = text;
  const warn = Number(el.dataset.warn) * 1000;
  const alarm = Number(el.dataset.alarm) * 1000;
  const level = alarm && ms >= alarm ? "alarm" : warn && ms >= warn ? "warn" : "";
  if ((el.dataset.level || "") !== level) el.dataset.level = level;
  if (el.dataset.row) {
    const row = el.closest("tr, li");
    if (row && (row.dataset.level || "") !== level) row.dataset.level = level;
  }
}

export function tick(root = document) {
  const at = now();
  for (const el of root.querySelectorAll("[data-since]")) update(el, at);
}

export function startTicker(root = document) {
  tick(root);
  return setInterval(() => tick(root), 1000);
}
