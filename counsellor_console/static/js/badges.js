// Small labelled badges shared by the queue, the chat list and the chat header.
import { h } from "./dom.js";
import { label, t } from "./i18n.js";

/** Risk / in-danger / priority badge (the most serious one), or null. */
export function priorityBadge(preChat, priority, risk = null) {
  if (risk === "imminent" || risk === "high") {
    return h("span", { class: `badge ${risk === "imminent" ? "danger" : "urgent"}`, text: t(`badge_risk_${risk}`) });
  }
  if (preChat && preChat.in_danger) return h("span", { class: "badge danger", text: t("badge_in_danger") });
  if (priority > 0) return h("span", { class: "badge urgent", text: t("badge_priority") });
  return null;
}

/** "SQ" shown, "Albanian" read out. */
export function langBadge(code) {
  if (!code) return null;
  return h(
    "span",
    { class: "badge lang", attrs: { title: label("lang_name", code) } },
    h("span", { text: label("lang_short", code), attrs: { "aria-hidden": "true" } }),
    h("span", { class: "sr-only", text: label("lang_name", code) }),
  );
}

/** The child's page connected or not; `short` for tight lists ("online" with the dot). */
export function presenceBadge(online, short = false) {
  if (online === null || online === undefined) return null;
  const key = online ? "child_online" : "child_offline";
  return h(
    "span",
    { class: `presence ${online ? "online" : "offline"}` },
    h("span", { class: "dot", attrs: { "aria-hidden": "true" } }),
    short ? t(`${key}_short`) : t(key),
  );
}

/** "13-15 · Bullying · Girl": the pre-chat answers that were given, in one line. */
export function preChatSummary(preChat) {
  const parts = [];
  if (preChat && preChat.age_band) parts.push(label("age", preChat.age_band));
  if (preChat && preChat.topic) parts.push(label("topic", preChat.topic));
  if (preChat && preChat.gender) parts.push(label("gender", preChat.gender));
  return parts.length ? parts.join(" · ") : t("prechat_none");
}

/** A message left while nobody could answer (not a live chat): marked in the queue. */
export function modeBadge(mode) {
  if (mode !== "message") return null;
  return h("span", { class: "badge message", text: t("badge_message") });
}

/** The pre-chat answers as [term, value, class] rows, "not answered" where none was given. */
export function preChatRows(pre, langCode) {
  const notAnswered = t("prechat_not_answered");
  return [
    [t("prechat_age"), pre.age_band ? label("age", pre.age_band) : notAnswered],
    [t("prechat_gender"), pre.gender ? label("gender", pre.gender) : notAnswered],
    [
      t("prechat_in_danger"),
      pre.in_danger === true ? t("yes") : pre.in_danger === false ? t("no") : notAnswered,
      pre.in_danger === true ? "danger" : "",
    ],
    [t("prechat_topic"), pre.topic ? label("topic", pre.topic) : notAnswered],
    [t("prechat_lang"), langCode ? label("lang_name", langCode) : notAnswered],
  ];
}
