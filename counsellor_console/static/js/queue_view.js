// The queue: who is waiting, in serving order, with "Take next" and take-this-chat buttons.
import { langBadge, modeBadge, preChatSummary, presenceBadge, priorityBadge } from "./badges.js";
import { byId, clear, h, reconcile } from "./dom.js";
import { t, tn } from "./i18n.js";

export class QueueView {
  constructor(store) {
    this.store = store;
    this.list = byId("queue-list");
    this.empty = byId("queue-empty");
    this.count = byId("queue-count");
    this.takeNext = byId("take-next");
    this.hint = byId("take-hint");
    this.takeNext.addEventListener("click", () => this.takeNextChat());
  }

  /** Why taking is not possible right now, or null when it is. */
  blocker() {
    const store = this.store;
    if (!store.ready) return "take_blocked_offline";
    if (store.takePending()) return "take_pending";
    if (!store.me || store.me.status !== "available") return "take_blocked_status";
    if (store.atCapacity()) return "take_blocked_capacity";
    return null;
  }

  blockerText(key) {
    return t(key, { load: this.store.load(), cap: this.store.capacity() ?? "" });
  }

  takeNextChat() {
    const reason = this.blocker() || (this.store.queue.length ? null : "take_blocked_empty");
    if (reason) {
      this.say(this.blockerText(reason));
      return;
    }
    this.store.take();
  }

  takeChat(id) {
    const reason = this.blocker();
    if (reason) {
      this.say(this.blockerText(reason));
      return;
    }
    this.store.take(id);
  }

  say(text) {
    // Re-set even when unchanged, so that a repeated Alt+N is announced again.
    this.hint.textContent = "";
    requestAnimationFrame(() => {
      this.hint.textContent = text;
    });
  }

  render() {
    const store = this.store;
    const items = store.queue;
    this.count.textContent = String(items.length);
    this.empty.hidden = items.length > 0;
    const reason = this.blocker();
    const blocked = reason !== null || items.length === 0;
    this.takeNext.setAttribute("aria-disabled", String(blocked));
    const standing = reason && reason !== "take_pending" ? this.blockerText(reason) : reason ? t(reason) : "";
    if (this.hint.textContent !== standing) this.hint.textContent = standing;

    reconcile(
      this.list,
      items,
      (item) => item.conversation_id,
      (item) => this.createItem(item),
      (node, item, index) => this.updateItem(node, item, index, reason !== null),
    );
  }

  createItem(item) {
    const info = h("div", { class: "q-info" });
    const wait = h(
      "span",
      { class: "q-wait" },
      h("span", { class: "sr-only", text: `${t("waiting")} ` }),
      h("span", { attrs: { "data-since": item.waiting_since, "data-fmt": "wait" } }),
    );
    const button = h("button", { class: "btn small", attrs: { type: "button" }, text: t("take") });
    button.addEventListener("click", () => this.takeChat(button.closest("li").dataset.key));
    return h("li", { class: "q-item" }, info, h("div", { class: "q-side" }, wait, button));
  }

  updateItem(node, item, index, blocked) {
    const pos = typeof item.position === "number" ? item.position : index + 1;
    const pre = item.pre_chat || {};
    const imminent = item.risk_level === "imminent";
    node.classList.toggle("danger", Boolean(pre.in_danger) || imminent);
    node.classList.toggle("urgent", !pre.in_danger && !imminent && item.priority > 0);
    node.classList.toggle("message", item.mode === "message");
    const info = node.querySelector(".q-info");
    clear(info);
    info.append(
      h(
        "div",
        { class: "q-top" },
        h("span", { class: "q-pos", text: t("queue_position", { pos }) }),
        priorityBadge(pre, item.priority, item.risk_level),
        modeBadge(item.mode),
        langBadge(item.lang),
      ),
      h(
        "div",
        { class: "q-detail" },
        h("span", { text: preChatSummary(pre) }),
        item.last_seq > 0
          ? h("span", { class: "q-wrote", text: tn(item.mode === "message" ? "queue_left" : "queue_wrote", item.last_seq) })
          : null,
        item.child_online === false ? presenceBadge(false, true) : null,
      ),
    );
    const button = node.querySelector("button");
    button.setAttribute("aria-label", t("take_label", { pos }));
    button.setAttribute("aria-disabled", String(blocked));
  }
}
