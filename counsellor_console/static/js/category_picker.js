// The CHI categories as a searchable multi-select: chosen ones as removable chips, and a
// combobox whose list (subcategories grouped under their category) filters as one types.
// Keys: Down/Up move, Enter adds or removes the highlighted one, Escape closes.
import { byId, clear, h } from "./dom.js";
import { t } from "./i18n.js";
import { categoryLabel, searchKey } from "./taxonomy.js";

export class CategoryPicker {
  /** onChange(codes) is called with the new list whenever the counsellor changes it. */
  constructor(onChange) {
    this.onChange = onChange;
    this.input = byId("cat-search");
    this.list = byId("cat-listbox");
    this.chosenBox = byId("cat-chosen");
    this.count = byId("cat-count");
    this.emptyNote = byId("cat-empty");
    this.field = this.input.closest(".cat-field");
    this.tax = null;
    this.codes = [];
    this.options = []; // the option elements shown, in order
    this.active = -1;
    this.disabled = false;

    this.input.addEventListener("input", () => this.open());
    this.input.addEventListener("focus", () => this.renderList());
    this.input.addEventListener("keydown", (e) => this.onKey(e));
    this.input.addEventListener("blur", () => {
      // A click on an option arrives after the blur: close a moment later.
      setTimeout(() => {
        if (!this.list.contains(document.activeElement)) this.close();
      }, 150);
    });
    this.list.addEventListener("mousedown", (e) => e.preventDefault());
  }

  setTaxonomy(tax) {
    this.tax = tax;
  }

  /** Show these codes as chosen (a record loaded, or another chat opened: `reset`). */
  set(codes, disabled, reset = false) {
    this.codes = [...(codes || [])];
    this.disabled = disabled;
    this.input.disabled = disabled;
    this.field.classList.toggle("locked", disabled);
    if (reset) {
      this.input.value = "";
      this.close();
    }
    this.renderChips();
    if (!this.list.hidden) this.renderList();
  }

  toggle(code) {
    if (this.disabled) return;
    const at = this.codes.indexOf(code);
    if (at >= 0) this.codes.splice(at, 1);
    else this.codes.push(code);
    // Chosen: the search starts afresh for the next one, the whole list in view.
    this.input.value = "";
    this.renderChips();
    this.renderList();
    const again = this.options.findIndex((o) => o.dataset.code === code);
    if (again >= 0) this.move(again);
    this.onChange([...this.codes]);
  }

  open() {
    this.list.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.active = -1;
    this.renderList();
    if (this.input.value.trim() && this.options.length) this.move(0);
  }

  close() {
    this.list.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
    this.active = -1;
  }

  onKey(e) {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (this.list.hidden) this.open();
      const step = e.key === "ArrowDown" ? 1 : -1;
      const n = this.options.length;
      if (n) this.move(this.active < 0 ? (step > 0 ? 0 : n - 1) : (this.active + step + n) % n);
    } else if (e.key === "Enter") {
      e.preventDefault();
      if (!this.list.hidden && this.active >= 0) this.toggle(this.options[this.active].dataset.code);
      else this.open();
    } else if (e.key === "Escape") {
      if (!this.list.hidden) {
        e.preventDefault();
        e.stopPropagation();
        this.close();
      }
    } else if (e.key === "Backspace" && !this.input.value && this.codes.length) {
      this.toggle(this.codes[this.codes.length - 1]);
    }
  }

  move(index) {
    if (this.active >= 0 && this.options[this.active]) this.options[this.active].classList.remove("active");
    this.active = index;
    const option = this.options[index];
    if (!option) return;
    option.classList.add("active");
    this.input.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  }

  renderChips() {
    clear(this.chosenBox);
    this.count.textContent = this.codes.length ? t("record_categories_count", { n: this.codes.length }) : "";
    this.emptyNote.hidden = !(this.disabled && this.codes.length === 0);
    for (const code of this.codes) {
      const name = categoryLabel(this.tax, code);
      this.chosenBox.append(
        h(
          "li",
          { class: "chip" },
          h("span", { text: name }),
          this.disabled
            ? null
            : h("button", {
                class: "chip-x",
                text: "×",
                attrs: { type: "button", "aria-label": t("record_category_remove", { name }) },
                on: {
                  click: () => {
                    this.toggle(code);
                    this.input.focus();
                  },
                },
              }),
        ),
      );
    }
  }

  renderList() {
    if (!this.tax || this.list.hidden) return;
    const query = searchKey(this.input.value.trim());
    const activeCode = this.active >= 0 && this.options[this.active] ? this.options[this.active].dataset.code : null;
    clear(this.list);
    this.options = [];
    for (const parent of this.tax.categories) {
      const parentHit = query && searchKey(parent.name).includes(query);
      const children = parent.children.filter((c) => !query || parentHit || searchKey(c.name).includes(query));
      if (!children.length) continue;
      const labelId = `cat-g-${parent.code}`;
      const group = h(
        "div",
        { attrs: { role: "group", "aria-labelledby": labelId } },
        h("div", { class: "cat-group", text: parent.name, attrs: { id: labelId, role: "presentation" } }),
      );
      for (const child of children) {
        const chosen = this.codes.includes(child.code);
        const option = h(
          "div",
          {
            class: `cat-option${chosen ? " chosen" : ""}`,
            attrs: { role: "option", id: `cat-o-${child.code}`, "aria-selected": String(chosen), "data-code": child.code },
            on: { click: () => this.toggle(child.code) },
          },
          h("span", { class: "tick", text: chosen ? "✓" : "", attrs: { "aria-hidden": "true" } }),
          h("span", { text: child.name }),
        );
        this.options.push(option);
        group.append(option);
      }
      this.list.append(group);
    }
    if (!this.options.length) {
      this.list.append(h("div", { class: "cat-none", text: t("record_categories_none"), attrs: { role: "presentation" } }));
    }
    const again = activeCode ? this.options.findIndex((o) => o.dataset.code === activeCode) : -1;
    if (again >= 0) this.move(again);
    else {
      this.active = -1;
      this.input.removeAttribute("aria-activedescendant");
    }
  }
}
