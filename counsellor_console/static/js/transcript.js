// One chat's transcript: messages in seq order, then this tab's unsent messages.
// Nodes are reused across updates so the live log announces only what is new.
import { byId, h, reconcile } from "./dom.js";
import { label, t } from "./i18n.js";
import { clock } from "./time.js";

const NEAR_BOTTOM_PX = 80;

export class Transcript {
  constructor(store) {
    this.store = store;
    this.scroller = byId("transcript-scroll");
    this.list = byId("transcript");
    this.chatId = null;
  }

  entries(chat) {
    const sent = [...chat.messages.values()].sort((a, b) => a.seq - b.seq);
    const out = sent.map((m) => ({ ...m, pending: null }));
    for (const entry of chat.outbox.values()) {
      out.push({ seq: null, from: "counsellor", body: entry.body, at: null, clientId: entry.clientId, pending: entry });
    }
    return out;
  }

  render(chat) {
    const switched = chat.id !== this.chatId;
    if (switched) {
      // Opening another chat is not news: silence the log while it is refilled, so a screen
      // reader does not read the whole history out; only later additions are announced.
      this.scroller.setAttribute("aria-live", "off");
      const fresh = this.list.cloneNode(false);
      this.list.replaceWith(fresh);
      this.list = fresh;
      this.chatId = chat.id;
      requestAnimationFrame(() => this.scroller.setAttribute("aria-live", "polite"));
    }
    const gap = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight;
    const nearBottom = gap < NEAR_BOTTOM_PX;
    const before = this.list.childElementCount;
    let ownAdded = false;
    reconcile(
      this.list,
      this.entries(chat),
      // Keyed by client_id when there is one, so an acknowledged message keeps its node.
      (m) => (m.clientId ? `c:${m.clientId}` : `s:${m.seq}`),
      (m) => {
        if (m.from === "counsellor") ownAdded = true;
        return this.create(m);
      },
      (node, m) => this.update(node, m, chat),
    );
    if (switched || nearBottom || (ownAdded && this.list.childElementCount > before)) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
    }
  }

  create(m) {
    const from = ["child", "counsellor", "system"].includes(m.from) ? m.from : "system";
    const bubble = h(
      "div",
      { class: "bubble" },
      h("span", { class: "sr-only", text: `${label("from", from)}: ` }),
      h("span", { class: "body", text: m.body }),
    );
    const meta = h(
      "div",
      { class: "meta" },
      h("span", { class: "time" }),
      h("span", { class: "state" }),
      h("span", { class: "actions" }),
    );
    const item = h("li", { class: `msg from-${from}` }, bubble, meta);
    if (from === "child" && m.risk) this.addRiskNote(item, m.risk);
    return item;
  }

  /** Highlight a child's message with risk words and offer to raise the record's level. */
  addRiskNote(item, risk) {
    const level = ["low", "high", "imminent"].includes(risk.level) ? risk.level : "high";
    const terms = Array.isArray(risk.terms) ? risk.terms.join(", ") : "";
    item.classList.add("risk-hit", `risk-${level}`);
    const note = h("p", { class: "risk-note" }, h("span", { text: t("risk_hit", { terms }) }));
    // Only high and imminent words suggest a level; low ones are highlighted and named.
    if (level !== "low") {
      const suggest = () => this.store.dispatchEvent(new CustomEvent("suggest-risk", { detail: { level } }));
      note.dataset.level = level;
      note.append(
        " ",
        h("button", {
          class: "link-btn risk-raise",
          text: t("risk_suggest", { level: label("risk", level) }),
          attrs: { type: "button" },
          on: { click: suggest },
        }),
        h("span", { class: "risk-set", hidden: true }),
      );
    }
    item.append(note);
  }

  /** One click raises the risk; once the chat is at that level (or closed), it just says so. */
  updateRiskNote(node, chat) {
    const note = node.querySelector(".risk-note[data-level]");
    if (!note) return;
    const order = ["none", "low", "high", "imminent"];
    const reached = order.indexOf(chat.risk || "none") >= order.indexOf(note.dataset.level);
    const button = note.querySelector(".risk-raise");
    const done = reached || chat.ended;
    if (button.hidden !== done) {
      const hadFocus = document.activeElement === button;
      button.hidden = done;
      if (hadFocus) byId("composer").focus();
    }
    const set = note.querySelector(".risk-set");
    set.hidden = !reached;
    const text = reached ? t("risk_is_set", { level: label("risk", chat.risk) }) : "";
    if (set.textContent !== text) set.textContent = text;
  }

  update(node, m, chat) {
    if (m.risk) this.updateRiskNote(node, chat);
    const time = node.querySelector(".time");
    const timeText = m.at ? clock(m.at) : "";
    if (time.textContent !== timeText) time.textContent = timeText;

    let state = "";
    let stateKey = "";
    if (m.from === "counsellor") {
      if (m.pending && m.pending.state === "failed") {
        stateKey = "failed";
        state = t("msg_failed", { reason: label("send_error", m.pending.error, t("send_error.unknown")) });
      } else if (m.pending) {
        stateKey = "pending";
        state = t("msg_sending");
      } else if (m.seq <= chat.childReadSeq) {
        stateKey = "read";
        state = t("msg_read");
      } else {
        stateKey = "sent";
        state = t("msg_sent");
      }
    }
    const stateEl = node.querySelector(".state");
    if (stateEl.textContent !== state) stateEl.textContent = state;
    if (node.dataset.state !== stateKey) {
      node.dataset.state = stateKey;
      this.renderActions(node.querySelector(".actions"), m, chat, stateKey);
    }
  }

  renderActions(box, m, chat, stateKey) {
    while (box.firstChild) box.firstChild.remove();
    if (stateKey !== "failed") return;
    if (!chat.ended) {
      box.append(
        h("button", {
          class: "link-btn",
          text: t("msg_retry"),
          attrs: { type: "button" },
          on: { click: () => this.store.retry(chat.id, m.clientId) },
        }),
      );
    }
    box.append(
      h("button", {
        class: "link-btn",
        text: t("msg_discard"),
        attrs: { type: "button" },
        on: { click: () => this.store.discard(chat.id, m.clientId) },
      }),
    );
  }
}
