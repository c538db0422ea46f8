// Small labelled marks shared by the floor's lists: words first, colour only as a second cue.
import { h } from "../js/dom.js";
import { label, t } from "./i18n.js";

const URGENT_RISK = new Set(["high", "imminent"]);

export function riskBadge(level) {
  if (!level || level === "none") return h("span", { class: "quiet", text: label("risk", "none") });
  return h("span", { class: `badge risk-${level}`, text: label("risk", level) });
}

export function isUrgentRisk(level) {
  return URGENT_RISK.has(level);
}

/** The child's connection and language: "SQ · online". */
export function childCell(item) {
  const online = item.child_online !== false;
  return [
    h("abbr", { class: "lang", text: label("lang_short", item.lang), attrs: { title: label("lang_name", item.lang) } }),
    " ",
    h("span", {
      class: online ? "presence on" : "presence off",
      text: online ? t("child_online") : t("child_away"),
    }),
  ];
}

/** A button for a row action; `describedBy` names the row (who or which child) for screen readers. */
export function actionButton(action, text, describedBy, extra = "") {
  return h("button", {
    class: `btn small ${extra}`.trim(),
    text,
    attrs: { type: "button", "data-action": action, "aria-describedby": describedBy },
  });
}
