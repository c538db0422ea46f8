// The active chat: its header, notices (quick exit, transfer, hand-over note, a supervisor
// following), pre-chat answers, transcript, a supervisor's whispers, typing line, composer.
import { langBadge, preChatRows, preChatSummary, presenceBadge, priorityBadge } from "./badges.js";
import { Composer } from "./composer.js";
import { byId, clear, h } from "./dom.js";
import { label, t } from "./i18n.js";
import { clock } from "./time.js";
import { Transcript } from "./transcript.js";

export class ChatView {
  constructor(store) {
    this.store = store;
    this.emptyBox = byId("chat-empty");
    this.view = byId("chat-view");
    this.heading = byId("chat-heading");
    this.badges = byId("chat-badges");
    this.notices = byId("chat-notices");
    this.prechat = byId("prechat");
    this.endedBanner = byId("ended-banner");
    this.typingLine = byId("typing");
    this.endBtn = byId("end-chat");
    this.transferBtn = byId("transfer-chat");
    this.dismissBtn = byId("dismiss-chat");
    this.whispers = byId("whispers");
    this.whispersList = byId("whispers-list");
    this.transcript = new Transcript(store);
    this.composer = new Composer(store);

    this.dismissBtn.addEventListener("click", () => {
      const chat = store.activeChat();
      if (!chat) return;
      store.dismiss(chat.id);
      // The button is gone with the chat: keep the keyboard user in the chat area.
      if (store.activeChat()) this.composer.focus();
      else byId("chat-main").focus();
    });
    byId("whispers-hide").addEventListener("click", () => {
      const chat = store.activeChat();
      if (chat) store.dismissWhispers(chat.id);
      this.composer.focus();
    });
  }

  chatNumber(chat) {
    return this.store.orderedChats().indexOf(chat) + 1;
  }

  /** Everything about the active chat; `full` false when only its transcript changed. */
  render(full = true) {
    const chat = this.store.activeChat();
    this.emptyBox.hidden = chat !== null;
    this.view.hidden = chat === null;
    this.composer.attach(chat);
    if (!chat) return;
    if (full) this.renderHead(chat);
    this.transcript.render(chat);
    this.renderWhispers(chat);
    this.renderTyping(chat);
  }

  renderHead(chat) {
    this.heading.textContent = t("chat_heading", {
      n: this.chatNumber(chat),
      summary: preChatSummary(chat.preChat),
    });
    clear(this.badges);
    this.badges.append(
      ...[
        priorityBadge(chat.preChat, chat.priority, chat.risk),
        langBadge(chat.lang),
        chat.ended ? null : presenceBadge(chat.leftQuickly ? false : chat.childOnline),
        chat.assignedAt
          ? h("span", { class: "muted", text: t("chat_started", { time: clock(chat.assignedAt) }) })
          : null,
      ].filter(Boolean),
    );
    this.renderNotices(chat);
    this.renderPreChat(chat.preChat || {}, chat.lang);
    const focus = document.activeElement;
    const pending = Boolean(chat.transfer && ["pending", "sending"].includes(chat.transfer.state));
    this.endBtn.hidden = chat.ended;
    this.transferBtn.hidden = chat.ended;
    this.transferBtn.disabled = pending;
    if (chat.ended) this.endBtn.removeAttribute("aria-busy");
    this.dismissBtn.hidden = !chat.ended;
    if ((focus === this.endBtn || focus === this.transferBtn) && chat.ended) this.dismissBtn.focus();
    this.endedBanner.hidden = !chat.ended;
    const text = chat.ended ? this.endedText(chat) : "";
    if (this.endedBanner.textContent !== text) this.endedBanner.textContent = text;
  }

  endedText(chat) {
    if (chat.released && chat.endReason === "transferred") {
      const to = chat.transfer && chat.transfer.to;
      return to ? t("chat_transferred_to", { name: to.name }) : t("chat_transferred_queue");
    }
    if (chat.released && chat.endReason === "takeover" && chat.releasedBy) {
      return t("chat_taken_over_by", { name: chat.releasedBy.name });
    }
    const reason = chat.endReason ? label("end_reason", chat.endReason, "") : "";
    return t(chat.released ? "chat_released_banner" : "chat_ended_banner", { reason }).trim();
  }

  /** The notes that matter now, most urgent first; rebuilt only when their text changes. */
  renderNotices(chat) {
    const notes = [];
    if (chat.leftQuickly) {
      notes.push(["danger", t("notice_left_quickly_title"), t("notice_left_quickly_body")]);
    }
    const transfer = chat.transfer;
    if (transfer && !chat.ended) {
      const name = transfer.to ? transfer.to.name : "";
      if (transfer.state === "pending" || transfer.state === "sending") {
        notes.push(["info pending", t("notice_transfer_pending", { name }), t("notice_transfer_pending_body")]);
      } else if (transfer.state === "declined") {
        notes.push(["warn", t("notice_transfer_declined", { name }), t("notice_transfer_stays"), "dismiss"]);
      } else if (transfer.state === "lapsed") {
        notes.push(["warn", t("notice_transfer_lapsed", { name }), t("notice_transfer_stays"), "dismiss"]);
      }
    }
    if (chat.handover) {
      const from = chat.handover.from ? chat.handover.from.name : t("offer_someone");
      const note = chat.handover.note ? t("offer_note", { note: chat.handover.note }) : t("offer_no_note");
      notes.push(["info", t("notice_handover", { name: from }), note]);
    }
    if (chat.monitors.size && !chat.ended) {
      const names = [...chat.monitors.values()].join(", ");
      notes.push(["quiet", t("notice_monitored", { names }), ""]);
    }
    const key = JSON.stringify(notes);
    if (this.notices.dataset.key === key) return;
    this.notices.dataset.key = key;
    clear(this.notices);
    for (const [kind, title, body, action] of notes) {
      const box = h(
        "div",
        { class: `notice ${kind}` },
        h("p", { class: "notice-title" }, h("strong", { text: title }), body ? ` ${body}` : null),
      );
      if (action === "dismiss") {
        box.append(
          h("button", {
            class: "link-btn",
            text: t("notice_dismiss"),
            attrs: { type: "button" },
            on: {
              click: () => {
                this.store.setTransfer(chat.id, null);
                this.composer.focus();
              },
            },
          }),
        );
      }
      this.notices.append(box);
    }
  }

  renderPreChat(pre, langCode) {
    clear(this.prechat);
    for (const [term, value, cls] of preChatRows(pre, langCode)) {
      this.prechat.append(
        h("div", { class: `pc-row ${cls || ""}`.trim() }, h("dt", { text: term }), h("dd", { text: value })),
      );
    }
  }

  renderWhispers(chat) {
    const shown = chat.whispers.slice(chat.whispersSeen);
    this.whispers.hidden = shown.length === 0;
    const key = `${chat.id}:${chat.whispers.length}:${chat.whispersSeen}`;
    if (this.whispersList.dataset.key === key) return;
    this.whispersList.dataset.key = key;
    clear(this.whispersList);
    for (const w of shown.slice(-3)) {
      const from = w.from ? w.from.name : t("whisper_supervisor");
      this.whispersList.append(
        h(
          "li",
          {},
          h("span", { class: "w-meta", text: t("whisper_meta", { name: from, time: clock(w.at) }) }),
          h("span", { class: "w-body", text: w.body }),
        ),
      );
    }
  }

  renderTyping(chat) {
    const text = chat.childTyping && !chat.ended ? t("child_typing") : "";
    if (this.typingLine.textContent !== text) this.typingLine.textContent = text;
  }
}
