// The contact record of the active chat, on the server and saved as the counsellor goes
// (records.js). Options come from the taxonomy in the page's language.
import { CategoryPicker } from "./category_picker.js";
import { byId, clear, h } from "./dom.js";
import { label, t } from "./i18n.js";
import { URGENT_RISKS } from "./records.js";
import { loadTaxonomy } from "./taxonomy.js";
import { clock } from "./time.js";

const RISK_ORDER = ["none", "low", "high", "imminent"];

export class RecordView {
  constructor(store, records) {
    this.store = store;
    this.records = records;
    this.form = byId("record-form");
    this.empty = byId("record-empty");
    this.status = byId("record-status");
    this.error = byId("record-error");
    this.contactType = byId("rec-contact-type");
    this.age = byId("rec-age");
    this.gender = byId("rec-gender");
    this.municipality = byId("rec-municipality");
    this.summary = byId("rec-summary");
    this.actionsBox = byId("rec-actions");
    this.riskHint = byId("risk-hint");
    this.finalBox = byId("record-final-box");
    this.finaliseBtn = byId("record-finalise");
    this.retryBtn = byId("record-retry");
    this.picker = new CategoryPicker((codes) => this.edit({ categories: codes }));
    this.chatId = null;
    this.tax = null;

    this.form.addEventListener("submit", (e) => e.preventDefault());
    this.form.addEventListener("change", (e) => this.onChange(e.target));
    this.summary.addEventListener("input", () => this.edit({ summary: this.summary.value }));
    this.summary.addEventListener("blur", () => this.chatId && this.records.save(this.chatId));
    this.finaliseBtn.addEventListener("click", () => this.finalise());
    this.retryBtn.addEventListener("click", () => this.chatId && this.records.save(this.chatId));
    byId("risk-hint-set").addEventListener("click", () => this.raiseRisk("high", true));
    records.addEventListener("change", (e) => {
      if (e.detail.id === this.chatId) this.fill(false);
    });
    store.addEventListener("suggest-risk", (e) => this.raiseRisk(e.detail.level, true));

    this.loadTaxonomy();
  }

  /** The code lists, once; asked again every few seconds until the server answers. */
  async loadTaxonomy() {
    const tax = await loadTaxonomy();
    if (!tax) {
      setTimeout(() => this.loadTaxonomy(), 5000);
      return;
    }
    this.tax = tax;
    this.picker.setTaxonomy(tax);
    this.buildOptions(tax);
    this.fill(true);
  }

  buildOptions(tax) {
    const choose = () => h("option", { text: t("record_choose"), attrs: { value: "" } });
    clear(this.contactType);
    this.contactType.append(choose());
    for (const [key, counselling] of [["record_group_counselling", true], ["record_group_other", false]]) {
      const group = h("optgroup", { attrs: { label: t(key) } });
      for (const item of tax.contact_types.filter((c) => c.counselling === counselling)) {
        group.append(h("option", { text: item.name, attrs: { value: item.code } }));
      }
      this.contactType.append(group);
    }
    for (const [select, items] of [[this.age, tax.age_bands], [this.gender, tax.genders]]) {
      clear(select);
      select.append(choose());
      for (const item of items) select.append(h("option", { text: item.name, attrs: { value: item.code } }));
    }
    clear(this.municipality);
    this.municipality.append(choose());
    for (const county of tax.counties) {
      const group = h("optgroup", { attrs: { label: county.name } });
      for (const m of county.municipalities) group.append(h("option", { text: m.name, attrs: { value: m.code } }));
      this.municipality.append(group);
    }
    clear(this.actionsBox);
    const referrals = tax.actions.filter((a) => a.code.startsWith("referral_"));
    const box = (item) =>
      h(
        "label",
        { class: "check" },
        h("input", { attrs: { type: "checkbox", name: "actions", value: item.code } }),
        ` ${item.name}`,
      );
    for (const item of tax.actions) {
      if (item.code.startsWith("referral_")) {
        if (item === referrals[0]) {
          this.actionsBox.append(
            h(
              "fieldset",
              { class: "referrals" },
              h("legend", { text: t("record_referral_to") }),
              ...referrals.map(box),
            ),
          );
        }
        continue;
      }
      this.actionsBox.append(box(item));
    }
  }

  onChange(target) {
    if (!this.chatId || !target.name) return;
    if (target === this.summary || target.id === "cat-search") return;
    if (target.name === "risk_level") {
      this.edit({ risk_level: target.value }, URGENT_RISKS.includes(target.value));
      return;
    }
    if (target.name === "actions") {
      const actions = [...this.form.querySelectorAll('input[name="actions"]:checked')].map((b) => b.value);
      this.edit({ actions });
      return;
    }
    this.edit({ [target.name]: target.value || null }, target.name === "contact_type");
  }

  edit(patch, now = false) {
    if (this.chatId) this.records.edit(this.chatId, patch, { now });
  }

  /** Raise (never lower) the risk level; high and imminent are saved at once. */
  raiseRisk(level, focus) {
    const chat = this.store.activeChat();
    if (!chat || this.records.isFinal(chat.id)) return;
    const current = this.records.value(chat.id, "risk_level") || "none";
    if (RISK_ORDER.indexOf(current) < RISK_ORDER.indexOf(level)) {
      this.records.edit(chat.id, { risk_level: level }, { now: URGENT_RISKS.includes(level) });
    }
    if (focus) {
      const radio = this.form.querySelector(`input[name="risk_level"][value="${level}"]`);
      if (radio) radio.focus();
    }
  }

  /** Focus the first field (Alt+R). */
  focus() {
    if (!this.form.hidden) this.contactType.focus();
  }

  render() {
    const chat = this.store.activeChat();
    this.empty.hidden = chat !== null;
    this.form.hidden = chat === null;
    if (!chat) {
      this.chatId = null;
      return;
    }
    const switched = chat.id !== this.chatId;
    this.chatId = chat.id;
    this.records.open(chat.id);
    this.fill(switched);
  }

  /** Show the record's values; `all` also overwrites the field that has the focus. */
  fill(all) {
    const id = this.chatId;
    if (!id) return;
    const chat = this.store.chats.get(id);
    const e = this.records.entry(id);
    const ready = e.state === "ready" && this.tax !== null;
    const final = this.records.isFinal(id);
    const locked = !ready || final;
    const v = (field) => this.records.value(id, field);
    const focused = document.activeElement;
    const set = (el, value) => {
      if ((all || el !== focused) && el.value !== (value ?? "")) el.value = value ?? "";
    };
    for (const el of [this.contactType, this.age, this.gender, this.municipality, this.summary]) el.disabled = locked;
    if (ready) {
      set(this.contactType, v("contact_type"));
      set(this.age, v("age_band"));
      set(this.gender, v("gender"));
      set(this.municipality, v("municipality"));
      set(this.summary, v("summary"));
    }
    const risk = (ready && v("risk_level")) || "";
    for (const radio of this.form.querySelectorAll('input[name="risk_level"]')) {
      radio.checked = radio.value === risk;
      radio.disabled = locked;
    }
    const actions = new Set((ready && v("actions")) || []);
    for (const box of this.form.querySelectorAll('input[name="actions"]')) {
      box.checked = actions.has(box.value);
      box.disabled = locked;
    }
    this.picker.set(ready ? v("categories") : [], locked, all);
    const danger = Boolean(chat && chat.preChat && chat.preChat.in_danger);
    this.riskHint.hidden = !ready || final || !danger || URGENT_RISKS.includes(risk);
    this.contactType.setAttribute("aria-invalid", String(Boolean(e.error && e.error.field === "contact_type")));
    this.finalBox.hidden = !(ready && chat && chat.ended && !final);
    this.renderStatus(e, final);
  }

  renderStatus(e, final) {
    let text;
    let state = "";
    if (e.state === "loading" || e.state === "idle") text = t("record_loading");
    else if (e.state === "gone") {
      text = t("record_gone");
      state = "gone";
    } else if (e.state === "failed") {
      text = t("record_load_failed");
      state = "error";
    } else if (final) {
      text = t("record_final", { time: clock(e.record.finalised_at) });
      state = "final";
    } else if (e.error && !e.error.field && e.error.code === "offline") {
      text = t("record_offline");
      state = "error";
    } else if (e.saving) text = t("record_saving");
    else if (this.records.pending(e.id)) text = t("record_unsaved");
    else if (e.savedAt) {
      text = t("record_saved", { time: clock(e.savedAt) });
      state = "saved";
    } else text = t("record_draft");
    if (this.status.textContent !== text) this.status.textContent = text;
    this.status.dataset.state = state;
    this.retryBtn.hidden = state !== "error";

    let problem = "";
    if (e.error && e.state === "ready" && e.error.code !== "offline") {
      const field = e.error.field ? label("record_field", e.error.field, e.error.field) : "";
      problem = field ? t("record_refused_field", { field, message: e.error.message }) : t("record_refused", { message: e.error.message || label("error", e.error.code, t("error.generic")) });
    }
    if (this.error.textContent !== problem) this.error.textContent = problem;
    this.error.hidden = !problem;
  }

  async finalise() {
    if (!this.chatId) return;
    const id = this.chatId;
    if (!this.records.contactType(id)) {
      this.records.entry(id).error = { code: "invalid", field: "contact_type", message: t("record_need_type") };
      this.fill(false);
      this.contactType.focus();
      return;
    }
    this.finaliseBtn.setAttribute("aria-busy", "true");
    const answer = await this.records.finalise(id);
    this.finaliseBtn.removeAttribute("aria-busy");
    if (answer.ok) this.status.focus();
  }
}
