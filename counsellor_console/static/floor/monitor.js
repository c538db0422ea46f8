// The monitoring panel: one chat followed silently, read-only, with its history; whispers
// to its counsellor; take-over and block. The server records every start and stop.
import { byId, h, reconcile } from "../js/dom.js";
import { clock } from "./clock.js";
import { label, t } from "./i18n.js";

const TYPING_TIMEOUT_MS = 8000;
const STICK_TO_BOTTOM_PX = 48;

export class MonitorPanel {
  /**
   * @param {{send: (frame: object) => boolean, me: {id: string}, lang: string,
   *          onChange: () => void, announce: (text: string) => void,
   *          onTakeover: (chat: object) => void,
   *          onBlock: (chat: object, opener: Element) => void}} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.el = byId("monitor");
    this.heading = byId("monitor-heading");
    this.meta = byId("monitor-meta");
    this.banner = byId("monitor-banner");
    this.log = byId("monitor-log");
    this.scroller = byId("monitor-scroll");
    this.typing = byId("monitor-typing");
    this.form = byId("whisper-form");
    this.text = byId("whisper-text");
    this.sendButton = byId("whisper-send");
    this.takeoverButton = byId("takeover-btn");
    this.blockButton = byId("monitor-block-btn");
    this.error = h("p", { class: "form-error", attrs: { role: "alert" }, hidden: true });
    this.form.insertBefore(this.error, this.form.querySelector(".monitor-actions"));
    // The chat being followed; null when the panel is closed.
    this.cid = null;
    this.chat = null;
    this.opener = null;
    this.entries = new Map();
    this.order = 0;
    this.ended = false;
    this.mine = false;
    this.pendingWhisper = null;
    this.typingTimer = null;

    byId("monitor-close").addEventListener("click", () => this.stop());
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.whisper();
    });
    this.text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.whisper();
      }
    });
    this.takeoverButton.addEventListener("click", () => this.chat && this.hooks.onTakeover(this.chat));
    this.blockButton.addEventListener("click", () => this.chat && this.hooks.onBlock(this.chat, this.blockButton));
    this.el.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !e.defaultPrevented) {
        e.preventDefault();
        this.stop();
      }
    });
  }

  get isOpen() {
    return this.cid !== null;
  }

  /** Follow `chat` (stopping any other); `opener` gets the focus back on close. */
  start(chat, opener) {
    if (this.cid === chat.conversation_id) {
      this.heading.focus();
      return;
    }
    if (this.cid) this.hooks.send({ type: "monitor", conversation_id: this.cid, on: false });
    this.cid = chat.conversation_id;
    this.chat = chat;
    this.opener = opener;
    this.ended = false;
    this.mine = false;
    this.text.value = "";
    this.reset();
    this.el.hidden = false;
    document.body.classList.add("monitoring");
    this.describe();
    this.showBanner(t("monitor_starting"));
    this.hooks.send({ type: "monitor", conversation_id: this.cid, on: true });
    this.heading.focus();
    this.hooks.onChange();
  }

  stop() {
    if (!this.cid) return;
    this.hooks.send({ type: "monitor", conversation_id: this.cid, on: false });
    this.cid = null;
    this.chat = null;
    this.el.hidden = true;
    document.body.classList.remove("monitoring");
    this.reset();
    const opener = this.opener;
    this.opener = null;
    this.hooks.onChange();
    if (opener && opener.isConnected) opener.focus();
    else byId("chats-heading").focus?.();
  }

  /** After a reconnect the server has forgotten what this page followed: ask again. */
  resume() {
    if (!this.cid) return;
    this.reset();
    this.hooks.send({ type: "monitor", conversation_id: this.cid, on: true });
  }

  reset() {
    this.entries.clear();
    this.order = 0;
    this.log.replaceChildren();
    this.typing.textContent = "";
    this.error.hidden = true;
    clearTimeout(this.typingTimer);
  }

  /** The floor changed: keep the header (counsellor, risk, age) current. */
  update(floor) {
    if (!this.cid) return;
    const chat = floor.chats.find((c) => c.conversation_id === this.cid);
    if (chat) {
      this.chat = chat;
      this.mine = chat.counsellor.id === this.hooks.me.id;
    }
    this.describe();
  }

  describe() {
    const chat = this.chat;
    this.heading.textContent = t("monitor_heading", { name: chat.counsellor.name || t("counsellor_unknown") });
    this.meta.replaceChildren(
      h("span", { text: label("lang_name", chat.lang) }),
      " · ",
      h("span", { text: t("monitor_started", { time: clock(chat.assigned_at || chat.created_at) }) }),
      " · ",
      h("span", { text: t("monitor_risk", { level: label("risk", chat.risk_level || "none") }) }),
      " · ",
      h("span", { text: chat.child_online === false ? t("child_away") : t("child_online") }),
    );
    const closed = this.ended || this.mine;
    this.text.disabled = closed;
    this.sendButton.disabled = closed;
    this.takeoverButton.disabled = closed;
  }

  showBanner(text, kind = "") {
    this.banner.hidden = !text;
    this.banner.className = `banner ${kind}`.trim();
    this.banner.replaceChildren(text);
  }

  whisper() {
    const body = this.text.value.trim();
    if (!this.cid || !body || this.ended || this.mine) return;
    this.error.hidden = true;
    this.pendingWhisper = body;
    this.sendButton.setAttribute("aria-busy", "true");
    if (!this.hooks.send({ type: "whisper", conversation_id: this.cid, body })) {
      this.showError(t("error.offline"));
    }
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = false;
    this.sendButton.removeAttribute("aria-busy");
  }

  /** A frame about the followed chat; false if it is about something else. */
  handle(frame) {
    if (!this.cid || frame.conversation_id !== this.cid) return false;
    switch (frame.type) {
      case "monitoring":
        this.showBanner(frame.last_seq === 0 ? t("monitor_no_messages") : "");
        return true;
      case "msg":
        if (this.banner.textContent === t("monitor_no_messages")) this.showBanner("");
        this.add(`m${frame.seq}`, frame);
        return true;
      case "whisper":
        this.add(`w${frame.at}-${frame.from?.id}`, frame);
        if (frame.from?.id === this.hooks.me.id && frame.body === this.pendingWhisper) {
          this.pendingWhisper = null;
          this.text.value = "";
          this.sendButton.removeAttribute("aria-busy");
          this.hooks.announce(t("whisper_sent"));
        }
        return true;
      case "typing":
        if (frame.from === "child") this.showTyping(frame.on);
        return true;
      case "presence":
        this.chat = { ...this.chat, child_online: frame.child === "online" };
        this.describe();
        if (frame.child === "left_quickly") this.showBanner(t("monitor_quick_exit"), "warn");
        return true;
      case "ended":
        this.ended = true;
        this.showTyping(false);
        this.showBanner(t("monitor_ended", { reason: label("end_reason", frame.reason, "") }), "warn");
        this.describe();
        return true;
      case "assigned":
        this.mine = true;
        this.showBanner(t("monitor_now_yours"), "ok");
        this.banner.append(" ", h("a", { text: t("open_console"), attrs: { href: `/console?lang=${this.hooks.lang}` } }));
        this.describe();
        return true;
      case "released":
        if (frame.reason === "takeover" && frame.by && frame.by.id !== this.hooks.me.id) {
          this.showBanner(t("monitor_taken_by", { name: frame.by.name }), "warn");
        }
        return true;
      case "error":
        this.showError(frame.text);
        return true;
      default:
        return true;
    }
  }

  showTyping(on) {
    clearTimeout(this.typingTimer);
    this.typing.textContent = on ? t("child_typing") : "";
    if (on) this.typingTimer = setTimeout(() => (this.typing.textContent = ""), TYPING_TIMEOUT_MS);
  }

  add(key, frame) {
    if (this.entries.has(key)) return;
    this.entries.set(key, { key, frame, order: this.order++ });
    const box = this.scroller;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < STICK_TO_BOTTOM_PX;
    const sorted = [...this.entries.values()].sort(
      (a, b) => (a.frame.at < b.frame.at ? -1 : a.frame.at > b.frame.at ? 1 : a.order - b.order),
    );
    reconcile(this.log, sorted, (e) => e.key, (e) => entry(e.frame), () => {});
    if (atBottom || frame.type === "whisper") box.scrollTop = box.scrollHeight;
  }
}

function entry(frame) {
  const whisper = frame.type === "whisper";
  const who = whisper
    ? t("who_whisper", { name: frame.from?.name || "" })
    : label("who", frame.from, frame.from);
  const head = h(
    "p",
    { class: "entry-head" },
    h("span", { class: "who", text: who }),
    " ",
    h("time", { text: clock(frame.at), attrs: { datetime: frame.at } }),
  );
  if (frame.risk?.terms?.length) {
    head.append(" ", h("span", { class: `badge risk-${frame.risk.level}`, text: t("risk_words", { terms: frame.risk.terms.join(", ") }) }));
  }
  return h(
    "li",
    { class: whisper ? "entry whisper" : `entry from-${frame.from}` },
    head,
    h("p", { class: "entry-body", text: frame.body }),
  );
}
