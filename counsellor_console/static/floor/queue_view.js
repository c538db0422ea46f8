// The queue in serving order: how long each child has waited, why they are urgent, what
// they want to talk about, and the supervisor's actions (assign, block).
import { clear, h, reconcile } from "../js/dom.js";
import { actionButton, childCell, isUrgentRisk, riskBadge } from "./badges.js";
import { ticking } from "./clock.js";
import { label, t } from "./i18n.js";

export function renderQueue(els, items, { config }) {
  els.table.hidden = items.length === 0;
  els.empty.hidden = items.length > 0;
  reconcile(els.body, items, (item) => item.conversation_id, create, (row, item) => update(row, item, config));
}

function create(item) {
  const id = `queue-${item.conversation_id}`;
  return h(
    "tr",
    {},
    h("th", { class: "num", attrs: { scope: "row", id: `${id}-pos` } }),
    h("td", {}, h("span", { class: "num" })),
    h("td", { class: "urgency" }),
    h("td", { class: "about" }),
    h("td", { class: "mode" }),
    h("td", { class: "child" }),
    h(
      "td",
      { class: "actions" },
      actionButton("assign", t("assign"), `${id}-pos`),
      actionButton("block", t("block"), `${id}-pos`, "danger-outline"),
    ),
  );
}

export function urgencyOf(item) {
  const marks = [];
  if (item.pre_chat?.in_danger) marks.push(h("span", { class: "badge danger", text: t("says_in_danger") }));
  if (item.risk_level && item.risk_level !== "none") marks.push(riskBadge(item.risk_level));
  if (!marks.length && item.priority > 0) marks.push(h("span", { class: "badge urgent", text: t("priority") }));
  if (!marks.length) marks.push(h("span", { class: "quiet", text: t("priority_normal") }));
  return marks;
}

export function aboutOf(item) {
  const pre = item.pre_chat || {};
  const parts = [];
  if (pre.topic) parts.push(label("topic", pre.topic));
  if (pre.age_band && pre.age_band !== "unknown") parts.push(label("age", pre.age_band));
  if (pre.gender && pre.gender !== "unknown") parts.push(label("gender", pre.gender));
  return parts.length ? parts.join(" · ") : t("about_unknown");
}

function update(row, item, config) {
  const [pos, waited, urgency, about, mode, child] = row.children;
  const position = t("position", { n: item.position });
  if (pos.textContent !== position) pos.textContent = position;
  ticking(waited.firstChild, item.waiting_since, {
    warn: config.wait_alert_s / 2,
    alarm: config.wait_alert_s,
    row: true,
  });
  const urgent = Boolean(item.pre_chat?.in_danger) || isUrgentRisk(item.risk_level);
  row.dataset.risk = urgent ? "urgent" : "";
  const urgencyKey = `${item.pre_chat?.in_danger}|${item.risk_level}|${item.priority}`;
  if (urgency.dataset.value !== urgencyKey) {
    urgency.dataset.value = urgencyKey;
    clear(urgency);
    urgency.append(...urgencyOf(item));
  }
  const words = aboutOf(item);
  if (about.textContent !== words) about.textContent = words;
  const modeText = label("mode", item.mode || "chat");
  if (mode.textContent !== modeText) mode.textContent = modeText;
  const childKey = `${item.lang}|${item.child_online}`;
  if (child.dataset.value !== childKey) {
    child.dataset.value = childKey;
    clear(child);
    child.append(...childCell(item));
  }
}
