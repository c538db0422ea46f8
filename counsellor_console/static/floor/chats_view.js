// Active chats: who counsels, for how long, how fresh the last message is, how long the
// child has waited for a reply (highlighted as it grows), risk, and the supervisor's actions.
import { clear, h, reconcile } from "../js/dom.js";
import { actionButton, childCell, isUrgentRisk, riskBadge } from "./badges.js";
import { ticking } from "./clock.js";
import { t } from "./i18n.js";

const REPLY_WARN_S = 60;

export function renderChats(els, chats, { monitoring, config }) {
  els.table.hidden = chats.length === 0;
  els.empty.hidden = chats.length > 0;
  reconcile(
    els.body,
    chats,
    (chat) => chat.conversation_id,
    create,
    (row, chat) => update(row, chat, monitoring, config),
  );
}

function create(chat) {
  const id = `chat-${chat.conversation_id}`;
  return h(
    "tr",
    {},
    h("th", { attrs: { scope: "row", id: `${id}-who` } }),
    h("td", {}, h("span", { class: "num" })),
    h("td", {}, h("span", { class: "num" })),
    h("td", { class: "reply" }, h("span", { class: "num" })),
    h("td", { class: "risk" }),
    h("td", { class: "child" }),
    h(
      "td",
      { class: "actions" },
      actionButton("monitor", t("monitor"), `${id}-who`),
      actionButton("takeover", t("takeover"), `${id}-who`, "danger-outline"),
    ),
  );
}

function update(row, chat, monitoring, config) {
  const [who, duration, last, reply, risk, child, actions] = row.children;
  const name = chat.counsellor.name || t("counsellor_unknown");
  if (who.textContent !== name) who.textContent = name;
  ticking(duration.firstChild, chat.assigned_at || chat.created_at);
  ticking(last.firstChild, chat.last_message_at, { fmt: "ago" });
  if (!chat.last_message_at) last.firstChild.textContent = t("no_messages");
  const waiting = chat.waiting_for_reply_since;
  ticking(reply.firstChild, waiting, {
    warn: REPLY_WARN_S,
    alarm: config.unanswered_alert_s,
    row: true,
  });
  if (!waiting) {
    reply.firstChild.textContent = t("replied");
    reply.firstChild.className = "quiet";
    delete row.dataset.level;
  } else {
    reply.firstChild.className = "num";
  }
  const key = `${chat.risk_level}`;
  if (risk.dataset.value !== key) {
    risk.dataset.value = key;
    clear(risk);
    risk.append(riskBadge(chat.risk_level));
  }
  row.dataset.risk = isUrgentRisk(chat.risk_level) ? "urgent" : "";
  const childKey = `${chat.lang}|${chat.child_online}`;
  if (child.dataset.value !== childKey) {
    child.dataset.value = childKey;
    clear(child);
    child.append(...childCell(chat));
  }
  // A chat that is already this supervisor's cannot be taken over again.
  actions.querySelector('[data-action="takeover"]').hidden = chat.counsellor.id === config.me.id;
  const watching = monitoring === chat.conversation_id;
  const monitor = actions.querySelector('[data-action="monitor"]');
  monitor.setAttribute("aria-pressed", watching ? "true" : "false");
  row.classList.toggle("watched", watching);
}
