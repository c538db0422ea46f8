// Ending a chat: the contact type (the server refuses to end without one), an optional
// closing message, then `end`; the record is saved first and finalised once it has ended.
import { byId, clear } from "./dom.js";
import { label, t } from "./i18n.js";

const WAIT_MS = 15000;

export class EndDialog {
  constructor(store, records, onDone) {
    this.store = store;
    this.records = records;
    this.onDone = onDone;
    this.dialog = byId("end-dialog");
    this.form = byId("end-form");
    this.type = byId("end-contact-type");
    this.closing = byId("end-closing");
    this.error = byId("end-error");
    this.confirm = byId("end-confirm");
    this.chatId = null;
    this.waiting = null; // {id, timer} while an `end` is on its way

    byId("end-cancel").addEventListener("click", () => this.dialog.close());
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    // Ctrl+Enter confirms from anywhere in the dialog (Enter in a text box is a new line).
    this.form.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.submit();
      }
    });
    this.type.addEventListener("change", () => {
      if (this.chatId) this.records.edit(this.chatId, { contact_type: this.type.value || null }, { now: true });
      this.showError("");
    });
    this.dialog.addEventListener("close", () => {
      this.chatId = null;
      this.setBusy(false);
      onDone();
    });
    store.addEventListener("refused", (e) => {
      const d = e.detail;
      if (d.context === "end" && this.waiting && d.id === this.waiting.id) {
        d.handled = true;
        this.refused(d);
      }
    });
    store.addEventListener("change", (e) => {
      const { what, id } = e.detail;
      if (what !== "chat" || !this.waiting || id !== this.waiting.id) return;
      const chat = store.chats.get(id);
      if (chat && chat.ended) this.ended(id);
    });
  }

  open() {
    const chat = this.store.activeChat();
    if (!chat || chat.ended || this.dialog.open) return;
    this.chatId = chat.id;
    // The record's contact type list, with the record's choice.
    clear(this.type);
    for (const node of byId("rec-contact-type").children) this.type.append(node.cloneNode(true));
    this.type.value = this.records.contactType(chat.id);
    this.closing.value = "";
    this.showError("");
    this.setBusy(false);
    this.dialog.showModal();
    (this.type.value ? this.closing : this.type).focus();
  }

  async submit() {
    const id = this.chatId;
    if (!id || this.waiting) return;
    if (!this.type.value) {
      this.showError(t("end_need_type"), this.type);
      return;
    }
    this.setBusy(true);
    this.records.edit(id, { contact_type: this.type.value });
    if (!(await this.records.save(id))) {
      this.setBusy(false);
      this.showError(t("end_record_not_saved"));
      return;
    }
    if (!this.store.end(id, this.closing.value)) {
      this.setBusy(false);
      this.showError(t("error_offline"));
      return;
    }
    this.waiting = {
      id,
      timer: setTimeout(() => {
        this.waiting = null;
        this.setBusy(false);
        this.showError(t("end_no_answer"));
      }, WAIT_MS),
    };
  }

  refused(d) {
    clearTimeout(this.waiting.timer);
    this.waiting = null;
    this.setBusy(false);
    if (d.code === "conflict" && d.field === "contact_type") {
      this.showError(t("end_refused_no_type"), this.type);
      return;
    }
    if (d.code === "closed") {
      this.showError(t("error_end_closed"));
      return;
    }
    this.showError(label("error", d.code, t("error.generic")));
  }

  async ended(id) {
    clearTimeout(this.waiting.timer);
    this.waiting = null;
    if (this.dialog.open && this.chatId === id) this.dialog.close();
    // The server finalises a record with a contact type when its chat ends; ask again in
    // case the end came another way, and show what the server holds.
    await this.records.refresh(id);
    if (!this.records.isFinal(id) && this.records.contactType(id)) await this.records.finalise(id);
  }

  setBusy(busy) {
    this.confirm.disabled = busy;
    if (busy) this.confirm.setAttribute("aria-busy", "true");
    else this.confirm.removeAttribute("aria-busy");
    this.confirm.textContent = busy ? t("end_pending") : t("end_chat");
  }

  showError(text, field = null) {
    this.error.textContent = text;
    this.error.hidden = !text;
    this.type.setAttribute("aria-invalid", String(Boolean(text) && field === this.type));
    if (field) field.focus();
  }
}
