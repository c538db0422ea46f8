// The message box: Enter sends, Shift+Enter breaks the line, a 2000-character counter,
// unsent text kept per chat, and a throttled typing indicator for the child.
import { byId } from "./dom.js";
import { t } from "./i18n.js";
import { MAX_BODY } from "./store.js";

const TYPING_REPEAT_MS = 3000;
const TYPING_IDLE_MS = 4000;
const WARN_AT = MAX_BODY - 200;

export class Composer {
  constructor(store) {
    this.store = store;
    this.form = byId("composer-form");
    this.input = byId("composer");
    this.counter = byId("composer-counter");
    this.limitNote = byId("composer-limit");
    this.sendBtn = byId("composer-send");
    this.chatId = null;
    // Typing state is per chat: switching chats ends "typing" in the one left behind.
    this.typingChat = null;
    this.typingSentAt = 0;
    this.idleTimer = null;

    this.input.maxLength = MAX_BODY;
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("input", () => this.onInput());
    this.input.addEventListener("blur", () => this.stopTyping());
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
  }

  /** Show the given chat's unsent text; keep the previous chat's. */
  attach(chat) {
    const id = chat ? chat.id : null;
    if (id !== this.chatId) {
      this.stopTyping();
      if (this.chatId !== null) this.store.setComposerText(this.chatId, this.input.value);
      this.chatId = id;
      this.input.value = id ? this.store.getComposerText(id) : "";
      this.updateCounter();
    }
    const closed = !chat || chat.ended;
    this.input.disabled = closed;
    this.sendBtn.disabled = closed;
    for (const id of ["open-canned", "open-resources"]) document.getElementById(id).disabled = closed;
    this.input.placeholder = closed ? t("composer_closed") : t("composer_placeholder");
  }

  focus() {
    if (!this.input.disabled) this.input.focus();
  }

  /** Put text (a canned response, a resource) at the caret, to be edited before sending. */
  insert(text) {
    if (this.input.disabled) return;
    const input = this.input;
    const start = input.selectionStart ?? input.value.length;
    const end = input.selectionEnd ?? start;
    const before = input.value.slice(0, start);
    // A "/" typed to open the library is not part of the message.
    const spacer = before && !/\s$/.test(before) ? " " : "";
    input.setRangeText(spacer + text, start, end, "end");
    input.focus();
    this.onInput();
  }

  onInput() {
    this.updateCounter();
    if (this.chatId === null) return;
    this.store.setComposerText(this.chatId, this.input.value);
    if (!this.input.value.trim()) {
      this.stopTyping();
      return;
    }
    const now = Date.now();
    if (this.typingChat !== this.chatId || now - this.typingSentAt > TYPING_REPEAT_MS) {
      this.store.typing(this.chatId, true);
      this.typingChat = this.chatId;
      this.typingSentAt = now;
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.idleTimer);
    if (this.typingChat !== null) this.store.typing(this.typingChat, false);
    this.typingChat = null;
    this.typingSentAt = 0;
  }

  updateCounter() {
    const n = this.input.value.length;
    this.counter.textContent = t("composer_counter", { n, max: MAX_BODY });
    this.counter.classList.toggle("warn", n >= WARN_AT);
    // The counter itself is not live; crossing the warning line is announced once.
    const note = n >= WARN_AT ? t("composer_near_limit", { n: MAX_BODY - n }) : "";
    const crossed = (n >= WARN_AT) !== (this.limitNote.dataset.on === "1");
    if (crossed || (n >= MAX_BODY && this.limitNote.dataset.full !== "1")) {
      this.limitNote.textContent = note;
    }
    this.limitNote.dataset.on = n >= WARN_AT ? "1" : "0";
    this.limitNote.dataset.full = n >= MAX_BODY ? "1" : "0";
  }

  submit() {
    if (this.chatId === null) return;
    const body = this.input.value.trim();
    if (!body) return;
    if (body.length > MAX_BODY) {
      this.limitNote.textContent = t("composer_too_long", { n: body.length - MAX_BODY });
      return;
    }
    if (this.store.sendMessage(this.chatId, body)) {
      this.stopTyping();
      this.input.value = "";
      this.store.setComposerText(this.chatId, "");
      this.updateCounter();
    }
  }
}
