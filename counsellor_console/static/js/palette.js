// The library at hand while writing: canned responses ("/" at the start of a line in the
// composer) and information resources, searchable, in Albanian and English. Choosing one
// inserts its text into the composer for the counsellor to edit: nothing is sent here.
import { api } from "./api.js";
import { byId, clear, h } from "./dom.js";
import { label, t } from "./i18n.js";
import { searchKey } from "./taxonomy.js";

const RELOAD_MS = 10 * 60 * 1000;
const PREVIEW_CHARS = 150;

export class Palette {
  constructor(store, composer) {
    this.store = store;
    this.composer = composer;
    this.box = byId("palette");
    this.title = byId("palette-title");
    this.search = byId("palette-search");
    this.list = byId("palette-list");
    this.topic = byId("palette-topic");
    this.topicBox = byId("palette-topic-box");
    this.status = byId("palette-status");
    this.tabs = { canned: byId("palette-tab-canned"), resources: byId("palette-tab-resources") };
    this.announce = byId("palette-announce");
    this.kind = "canned";
    this.items = { canned: [], resources: [] };
    this.loaded = false;
    this.options = [];
    this.active = -1;
    this.returnFocus = null;

    byId("palette-close").addEventListener("click", () => this.close(true));
    byId("open-canned").addEventListener("click", () => this.open("canned"));
    byId("open-resources").addEventListener("click", () => this.open("resources"));
    for (const [kind, tab] of Object.entries(this.tabs)) {
      tab.addEventListener("click", () => this.switchTo(kind));
    }
    this.search.addEventListener("input", () => this.render(true));
    this.topic.addEventListener("change", () => this.render(true));
    this.box.addEventListener("keydown", (e) => this.onKey(e));
    this.box.addEventListener("focusout", () => {
      setTimeout(() => {
        if (!this.box.hidden && !this.box.contains(document.activeElement)) this.close(false);
      }, 0);
    });
    this.list.addEventListener("mousedown", (e) => e.preventDefault());

    composer.input.addEventListener("keydown", (e) => {
      if (e.key !== "/" || e.ctrlKey || e.altKey || e.metaKey || e.isComposing) return;
      const { value, selectionStart } = composer.input;
      const atLineStart = selectionStart === 0 || value[selectionStart - 1] === "\n";
      if (!atLineStart) return;
      e.preventDefault();
      this.open("canned");
    });
    this.load();
    setInterval(() => this.load(), RELOAD_MS);
  }

  async load() {
    const answer = await api.get("/api/library");
    if (!answer.ok) {
      if (!this.loaded) {
        this.status.textContent = t("palette_load_failed");
        setTimeout(() => this.load(), 10000);
      }
      return;
    }
    this.items = { canned: answer.data.canned, resources: answer.data.resources };
    this.loaded = true;
    clear(this.topic);
    this.topic.append(h("option", { text: t("palette_all_topics"), attrs: { value: "" } }));
    for (const code of answer.data.topics) {
      this.topic.append(h("option", { text: label("res_topic", code), attrs: { value: code } }));
    }
    if (!this.box.hidden) this.render(false);
  }

  isOpen() {
    return !this.box.hidden;
  }

  open(kind) {
    const chat = this.store.activeChat();
    if (!chat || chat.ended) return;
    this.returnFocus = this.composer.input;
    this.box.hidden = false;
    this.search.value = "";
    this.topic.value = "";
    this.switchTo(kind);
    this.search.focus();
  }

  switchTo(kind) {
    this.kind = kind;
    for (const [name, tab] of Object.entries(this.tabs)) tab.setAttribute("aria-pressed", String(name === kind));
    this.title.textContent = t(kind === "canned" ? "palette_title_canned" : "palette_title_resources");
    this.search.placeholder = t(kind === "canned" ? "palette_search_canned" : "palette_search_resources");
    this.topicBox.hidden = kind !== "resources";
    this.render(true);
  }

  close(restoreFocus) {
    if (this.box.hidden) return;
    this.box.hidden = true;
    this.search.removeAttribute("aria-activedescendant");
    if (restoreFocus && this.returnFocus) this.returnFocus.focus();
  }

  onKey(e) {
    if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      this.close(true);
    } else if ((e.key === "ArrowDown" || e.key === "ArrowUp") && e.target === this.search) {
      e.preventDefault();
      const n = this.options.length;
      if (!n) return;
      const step = e.key === "ArrowDown" ? 1 : -1;
      this.move(this.active < 0 ? (step > 0 ? 0 : n - 1) : (this.active + step + n) % n);
    } else if (e.key === "Enter" && e.target === this.search) {
      e.preventDefault();
      if (this.active >= 0) this.insert(this.options[this.active].item);
    }
  }

  /** Items of the kind shown that match the search, the chat's language first. */
  matches() {
    const chat = this.store.activeChat();
    const chatLang = chat && chat.lang ? chat.lang : null;
    const query = searchKey(this.search.value.trim());
    const topic = this.kind === "resources" ? this.topic.value : "";
    const words = query.split(/\s+/).filter(Boolean);
    const found = this.items[this.kind].filter((item) => {
      if (topic && item.topic !== topic) return false;
      const haystack = searchKey(
        [item.title, item.body, ...(item.tags || []), item.topic ? label("res_topic", item.topic) : ""].join(" "),
      );
      return words.every((w) => haystack.includes(w));
    });
    return found.sort((a, b) => (a.lang === chatLang ? 0 : 1) - (b.lang === chatLang ? 0 : 1));
  }

  render(resetActive) {
    const found = this.loaded ? this.matches() : [];
    clear(this.list);
    this.options = found.map((item, i) => {
      const option = h(
        "li",
        {
          class: "pal-option",
          attrs: { role: "option", id: `pal-o-${i}`, "aria-selected": "false" },
          on: { click: () => this.insert(item) },
        },
        h(
          "span",
          { class: "pal-top" },
          h("span", { class: "pal-title", text: item.title }),
          item.topic ? h("span", { class: "pal-topic", text: label("res_topic", item.topic) }) : null,
          h("span", { class: "badge lang", text: label("lang_short", item.lang), attrs: { lang: item.lang } }),
          item.reviewed ? null : h("span", { class: "badge review", text: t("palette_to_review") }),
        ),
        h("span", { class: "pal-body", text: preview(item.body), attrs: { lang: item.lang } }),
      );
      option.item = item;
      return option;
    });
    this.list.append(...this.options);
    let status = "";
    if (!this.loaded) status = t("palette_loading");
    else if (!found.length) status = t(this.items[this.kind].length ? "palette_no_match" : "palette_empty");
    this.status.textContent = status;
    this.list.hidden = !found.length;
    if (resetActive || this.active >= found.length) this.active = -1;
    if (found.length && (this.active < 0 || resetActive)) this.move(0);
    else if (!found.length) this.search.removeAttribute("aria-activedescendant");
  }

  move(index) {
    if (this.options[this.active]) {
      this.options[this.active].classList.remove("active");
      this.options[this.active].setAttribute("aria-selected", "false");
    }
    this.active = index;
    const option = this.options[index];
    if (!option) return;
    option.classList.add("active");
    option.setAttribute("aria-selected", "true");
    this.search.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  }

  insert(item) {
    const text = item.url ? `${item.body}\n${item.url}` : item.body;
    this.close(false);
    this.composer.insert(text);
    this.announce.textContent = "";
    requestAnimationFrame(() => {
      this.announce.textContent = t("palette_inserted", { title: item.title });
    });
  }
}

function preview(body) {
  const flat = body.replace(/\s+/g, " ").trim();
  return flat.length > PREVIEW_CHARS ? `${flat.slice(0, PREVIEW_CHARS - 1)}…` : flat;
}
