// Transfers: the dialog that hands the active chat to a named colleague (who accepts or
// declines) or back to the front of the queue, and the offers colleagues make to me.
import { api } from "./api.js";
import { langBadge, preChatRows, preChatSummary, priorityBadge } from "./badges.js";
import { byId, clear, h, reconcile } from "./dom.js";
import { label, t } from "./i18n.js";
import { clock } from "./time.js";

const WAIT_MS = 15000;
const QUEUE = "queue";

export class TransferDialog {
  constructor(store, records, onDone) {
    this.store = store;
    this.records = records;
    this.dialog = byId("transfer-dialog");
    this.form = byId("transfer-form");
    this.targets = byId("transfer-targets");
    this.status = byId("transfer-status");
    this.note = byId("transfer-note");
    this.error = byId("transfer-error");
    this.confirm = byId("transfer-confirm");
    this.chatId = null;
    this.waiting = null;

    byId("transfer-cancel").addEventListener("click", () => this.dialog.close());
    byId("transfer-refresh").addEventListener("click", () => this.loadColleagues());
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
    this.dialog.addEventListener("close", () => {
      if (this.waiting) clearTimeout(this.waiting.timer);
      this.waiting = null;
      this.chatId = null;
      onDone();
    });
    store.addEventListener("refused", (e) => {
      const d = e.detail;
      if (d.context === "transfer" && this.waiting && d.id === this.waiting.id) {
        d.handled = true;
        this.refused(d);
      }
    });
    store.addEventListener("change", (e) => {
      const { what, id } = e.detail;
      if (what !== "chat" || !this.waiting || id !== this.waiting.id) return;
      const chat = store.chats.get(id);
      // Offered (pending) or, back to the queue, released: either way it went through.
      if (chat && ((chat.transfer && chat.transfer.state === "pending") || chat.released)) {
        this.waiting = null;
        this.dialog.close();
      }
    });
  }

  open() {
    const chat = this.store.activeChat();
    if (!chat || chat.ended || this.dialog.open) return;
    if (chat.transfer && chat.transfer.state === "pending") return;
    this.chatId = chat.id;
    this.note.value = "";
    this.showError("");
    this.setBusy(false);
    this.renderTargets([], true);
    this.dialog.showModal();
    this.loadColleagues();
  }

  async loadColleagues() {
    this.status.textContent = t("transfer_loading");
    const answer = await api.get("/api/staff/available");
    if (!this.dialog.open) return;
    if (!answer.ok) {
      this.status.textContent = t("transfer_list_failed");
      this.renderTargets([], false);
      return;
    }
    this.status.textContent = answer.data.length ? "" : t("transfer_nobody");
    this.renderTargets(answer.data, false);
  }

  renderTargets(colleagues, loading) {
    const chosen = this.form.querySelector('input[name="transfer_to"]:checked');
    const keep = chosen ? chosen.value : null;
    clear(this.targets);
    const option = (value, title, detail, disabled) =>
      h(
        "label",
        { class: `target${disabled ? " full" : ""}` },
        h("input", { attrs: { type: "radio", name: "transfer_to", value, disabled } }),
        h("span", { class: "target-name", text: title }),
        detail ? h("span", { class: "target-detail", text: detail }) : null,
      );
    for (const c of colleagues) {
      const full = c.load >= c.capacity;
      const detail = full
        ? t("transfer_full", { load: c.load, cap: c.capacity })
        : t("transfer_load", { load: c.load, cap: c.capacity });
      this.targets.append(option(c.id, c.name, detail, full));
    }
    this.targets.append(option(QUEUE, t("transfer_to_queue"), t("transfer_to_queue_detail"), false));
    const radios = [...this.targets.querySelectorAll("input:not([disabled])")];
    const first = radios.find((r) => r.value === keep) || (loading ? null : radios[0]);
    if (first) first.checked = true;
    // The list was rebuilt under the keyboard: keep the focus on the choice.
    const focus = document.activeElement;
    const lost = !focus || focus === document.body || focus === this.dialog || !focus.isConnected;
    if (this.dialog.open && first && lost) first.focus();
  }

  async submit() {
    const id = this.chatId;
    if (!id || this.waiting) return;
    const chosen = this.form.querySelector('input[name="transfer_to"]:checked');
    if (!chosen) {
      this.showError(t("transfer_choose"));
      return;
    }
    this.setBusy(true);
    // The record travels with the chat: the colleague should find it as it is now.
    await this.records.save(id);
    const to = chosen.value === QUEUE ? null : chosen.value;
    const name = chosen.closest("label").querySelector(".target-name").textContent;
    if (!this.store.transfer(id, to, this.note.value)) {
      this.setBusy(false);
      this.showError(t("error_offline"));
      return;
    }
    // Until the server says otherwise, remember where it is going.
    const chat = this.store.chats.get(id);
    if (chat) chat.transfer = { state: "sending", to: to ? { id: to, name } : null };
    this.waiting = {
      id,
      timer: setTimeout(() => {
        this.waiting = null;
        this.setBusy(false);
        this.showError(t("transfer_no_answer"));
      }, WAIT_MS),
    };
  }

  refused(d) {
    clearTimeout(this.waiting.timer);
    this.waiting = null;
    this.setBusy(false);
    const chat = this.store.chats.get(d.id);
    if (chat && chat.transfer && chat.transfer.state === "sending") chat.transfer = null;
    let text;
    if (d.code === "conflict" && ["unavailable", "at_capacity"].includes(d.reason)) {
      text = t("transfer_refused_unavailable");
    } else if (d.code === "conflict" && /not available/.test(d.message)) text = t("transfer_refused_unavailable");
    else if (d.code === "conflict") text = t("transfer_refused_pending");
    else if (d.code === "not_found") text = t("transfer_refused_gone");
    else text = label("error", d.code, t("error.generic"));
    this.showError(text);
    this.loadColleagues();
  }

  setBusy(busy) {
    this.confirm.disabled = busy;
    if (busy) this.confirm.setAttribute("aria-busy", "true");
    else this.confirm.removeAttribute("aria-busy");
    this.confirm.textContent = busy ? t("transfer_pending_btn") : t("transfer_confirm");
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }
}

/** Chats colleagues offer me, each with its note and pre-chat answers: Accept or Decline. */
export class OffersView {
  constructor(store) {
    this.store = store;
    this.box = byId("offers");
    this.list = byId("offers-list");
  }

  render() {
    const offers = [...this.store.offers.values()].sort((a, b) => a.receivedAt - b.receivedAt);
    this.box.hidden = offers.length === 0;
    reconcile(
      this.list,
      offers,
      (o) => o.conversation_id,
      (o) => this.create(o),
      (node, o) => this.update(node, o),
    );
  }

  create(o) {
    const id = o.conversation_id;
    const accept = h("button", {
      class: "btn primary small",
      text: t("offer_accept"),
      attrs: { type: "button" },
      on: { click: () => this.store.answerOffer(id, true) },
    });
    const decline = h("button", {
      class: "btn small",
      text: t("offer_decline"),
      attrs: { type: "button" },
      on: { click: () => this.store.answerOffer(id, false) },
    });
    const headingId = `offer-h-${id}`;
    return h(
      "li",
      { class: "offer-card", attrs: { "aria-labelledby": headingId } },
      h("p", { class: "offer-from", attrs: { id: headingId } }),
      h("p", { class: "offer-badges" }),
      h("p", { class: "offer-note" }),
      h("dl", { class: "offer-prechat" }),
      h("div", { class: "offer-actions" }, accept, decline),
    );
  }

  update(node, o) {
    const from = (o.from && o.from.name) || t("offer_someone");
    const at = o.offered_at || new Date(o.receivedAt).toISOString();
    node.querySelector(".offer-from").textContent = t("offer_from", { name: from, time: clock(at) });
    const badges = node.querySelector(".offer-badges");
    clear(badges);
    badges.append(
      ...[
        priorityBadge(o.pre_chat, o.priority, o.risk_level),
        langBadge(o.lang),
        h("span", { class: "offer-summary", text: preChatSummary(o.pre_chat) }),
      ].filter(Boolean),
    );
    const note = node.querySelector(".offer-note");
    note.textContent = o.note ? t("offer_note", { note: o.note }) : t("offer_no_note");
    note.classList.toggle("muted", !o.note);
    const dl = node.querySelector(".offer-prechat");
    clear(dl);
    for (const [term, value, cls] of preChatRows(o.pre_chat || {}, o.lang)) {
      dl.append(h("div", { class: `pc-row ${cls || ""}`.trim() }, h("dt", { text: term }), h("dd", { text: value })));
    }
    const busy = Boolean(o.answering);
    for (const button of node.querySelectorAll("button")) button.disabled = busy;
    node.querySelector(".offer-actions .primary").textContent = o.answering === "accept" ? t("offer_accepting") : t("offer_accept");
  }

  focusFirst() {
    const button = this.list.querySelector(".offer-actions .primary:not([disabled])");
    if (button) button.focus();
  }
}
