// Open alerts, newest first, each in plain words with the chat it concerns and a
// one-click acknowledgement.
import { h, reconcile } from "../js/dom.js";
import { ticking } from "./clock.js";
import { label, t } from "./i18n.js";

const SEVERE = new Set(["in_danger"]);

export function alertWords(alert) {
  if (alert.kind === "risk") return label("alert.risk", alert.level || "high");
  return label("alert", alert.kind, alert.kind);
}

export function isSevere(alert) {
  return SEVERE.has(alert.kind) || (alert.kind === "risk" && alert.level === "imminent");
}

/** Where the child of this alert is now: whose chat, or their place in the queue. */
export function whereIs(alert, chats, queue) {
  const chat = chats.find((c) => c.conversation_id === alert.conversation_id);
  if (chat) return { chat, text: t("alert_where_chat", { name: chat.counsellor.name }) };
  const item = queue.find((q) => q.conversation_id === alert.conversation_id);
  if (item) return { item, text: t("alert_where_queue", { n: item.position }) };
  return { text: t("alert_where_gone") };
}

export function renderAlerts(els, alerts, chats, queue) {
  const sorted = [...alerts].sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
  els.empty.hidden = sorted.length > 0;
  els.list.hidden = sorted.length === 0;
  reconcile(els.list, sorted, (a) => a.id, create, (li, alert) => update(li, alert, chats, queue));
}

function create(alert) {
  const id = `alert-${alert.id}`;
  return h(
    "li",
    { class: "alert" },
    h("p", { class: "alert-what", attrs: { id: `${id}-what` } }),
    h("p", { class: "alert-age" }),
    h("p", { class: "alert-where" }),
    h(
      "div",
      { class: "alert-actions" },
      h("button", {
        class: "btn small primary",
        text: t("ack"),
        attrs: { type: "button", "data-action": "ack", "aria-describedby": `${id}-what` },
      }),
      h("button", {
        class: "btn small",
        text: t("monitor"),
        attrs: { type: "button", "data-action": "monitor", "aria-describedby": `${id}-what` },
      }),
    ),
  );
}

function update(li, alert, chats, queue) {
  li.dataset.kind = alert.kind;
  li.dataset.severe = isSevere(alert) ? "1" : "";
  const what = li.querySelector(".alert-what");
  const words = alertWords(alert);
  if (what.textContent !== words) what.textContent = words;
  const where = whereIs(alert, chats, queue);
  li.querySelector(".alert-where").textContent = where.text;
  ticking(li.querySelector(".alert-age"), alert.at, { fmt: "ago" });
  li.querySelector('[data-action="monitor"]').hidden = !where.chat;
  li.dataset.conversation = alert.conversation_id;
}
