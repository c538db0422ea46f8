// "My chats": one button per chat, with unread count, child presence and time since the
// child last wrote. Alt+1..9 follow this order.
import { langBadge, preChatSummary, presenceBadge, priorityBadge } from "./badges.js";
import { byId, clear, h, reconcile } from "./dom.js";
import { t, tn } from "./i18n.js";

export class ChatsView {
  constructor(store, records) {
    this.store = store;
    this.records = records;
    this.list = byId("mychats-list");
    this.empty = byId("mychats-empty");
  }

  render() {
    const chats = this.store.orderedChats();
    this.empty.hidden = chats.length > 0;
    reconcile(
      this.list,
      chats,
      (chat) => chat.id,
      (chat) => {
        const button = h("button", { class: "chat-item", attrs: { type: "button" } });
        button.addEventListener("click", () => this.store.activate(chat.id));
        return h("li", {}, button);
      },
      (node, chat, index) => this.update(node, chat, index),
    );
  }

  update(node, chat, index) {
    const store = this.store;
    const button = node.firstElementChild;
    const active = chat.id === store.activeId;
    const unread = store.unread(chat);
    if (active) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
    button.classList.toggle("ended", chat.ended);
    button.classList.toggle("has-unread", unread > 0);
    button.classList.toggle("danger", Boolean(chat.preChat && chat.preChat.in_danger));
    if (index < 9) button.setAttribute("aria-keyshortcuts", `Alt+${index + 1}`);
    else button.removeAttribute("aria-keyshortcuts");

    let status;
    if (chat.ended) {
      let text = chat.released ? t("chat_released_short") : t("chat_ended_short");
      if (chat.released && chat.endReason === "transferred") text = t("chat_transferred_short");
      else if (!chat.released && this.records.entry(chat.id).state === "ready" && !this.records.isFinal(chat.id)) {
        text = t("chat_record_to_finish");
      }
      status = h("span", { class: "chat-ended", text });
    } else if (chat.leftQuickly) {
      status = h("span", { class: "chat-alert", text: t("child_left_quickly_short") });
    } else if (chat.transfer && chat.transfer.state === "pending") {
      status = h("span", { class: "chat-note", text: t("chat_transfer_pending_short") });
    } else if (chat.lastChildAt) {
      status = h("span", { attrs: { "data-since": chat.lastChildAt, "data-fmt": "ago" } });
    } else status = h("span", { text: t("no_child_message_yet") });

    clear(button);
    button.append(
      h(
        "span",
        { class: "chat-top" },
        h("span", { class: "chat-num", text: String(index + 1), attrs: { "aria-hidden": index < 9 ? null : "true" } }),
        h("span", { class: "chat-title", text: preChatSummary(chat.preChat) }),
        unread > 0
          ? h(
              "span",
              { class: "unread" },
              h("span", { text: String(unread), attrs: { "aria-hidden": "true" } }),
              h("span", { class: "sr-only", text: tn("unread", unread) }),
            )
          : null,
      ),
      h(
        "span",
        { class: "chat-meta" },
        priorityBadge(chat.preChat, chat.priority, chat.risk),
        langBadge(chat.lang),
        chat.ended || chat.leftQuickly ? null : presenceBadge(chat.childOnline, true),
        chat.whispers.length > chat.whispersSeen && !chat.ended
          ? h("span", { class: "badge whisper", text: t("badge_whisper") })
          : null,
        status,
      ),
    );
  }
}
