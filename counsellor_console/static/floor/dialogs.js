// The floor's dialogs (native <dialog>: focus kept inside, Escape cancels): assign a
// waiting child, block a child, the list of blocks, and a plain confirmation.
import { byId, h } from "../js/dom.js";
import { dayAndTime, duration, elapsed } from "./clock.js";
import { t } from "./i18n.js";
import { aboutOf } from "./queue_view.js";
import { withRoom } from "./summary_view.js";

function show(dialog, opener, focus) {
  dialog.returnValue = "";
  dialog.showModal();
  focus?.focus();
  dialog.addEventListener(
    "close",
    () => {
      if (opener?.isConnected) opener.focus();
    },
    { once: true },
  );
}

/** Ask before something that cannot be undone; resolves true on "yes". Cancel has the focus. */
export function confirmAction({ title, body, yes, opener }) {
  const dialog = byId("confirm-dialog");
  byId("confirm-heading").textContent = title;
  byId("confirm-body").textContent = body;
  byId("confirm-yes").textContent = yes;
  show(dialog, opener, dialog.querySelector('button[value="no"]'));
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

export class AssignDialog {
  constructor(send) {
    this.send = send;
    this.dialog = byId("assign-dialog");
    this.item = null;
    byId("assign-form").addEventListener("submit", (e) => {
      if (e.submitter?.value !== "assign") return;
      const choice = this.dialog.querySelector('input[name="assign-to"]:checked');
      if (!choice || !this.item) {
        e.preventDefault();
        return;
      }
      this.send(this.item, choice.value, choice.dataset.name);
    });
  }

  open(item, staff, opener) {
    this.item = item;
    const waited = elapsed(item.waiting_since) ?? 0;
    byId("assign-about").textContent = t("assign_about", {
      n: item.position,
      wait: duration(waited),
      about: aboutOf(item),
    });
    const options = byId("assign-options");
    const candidates = withRoom(staff).sort((a, b) => a.load / a.capacity - b.load / b.capacity);
    options.replaceChildren(
      ...candidates.map((s, i) => {
        const id = `assign-${s.id}`;
        return h(
          "div",
          { class: "choice" },
          h("input", {
            attrs: { type: "radio", name: "assign-to", id, value: s.id, "data-name": s.name, checked: i === 0 },
          }),
          h(
            "label",
            { attrs: { for: id } },
            h("span", { class: "name", text: s.name }),
            " ",
            h("span", { class: "quiet", text: t("assign_load", { n: s.load, of: s.capacity }) }),
          ),
        );
      }),
    );
    byId("assign-choices").hidden = candidates.length === 0;
    byId("assign-none").hidden = candidates.length > 0;
    byId("assign-confirm").disabled = candidates.length === 0;
    byId("assign-error").hidden = true;
    show(this.dialog, opener, options.querySelector("input") || this.dialog.querySelector('button[value="cancel"]'));
  }
}

export class BlockDialog {
  constructor(send, config) {
    this.send = send;
    this.config = config;
    this.dialog = byId("block-dialog");
    this.reason = byId("block-reason");
    this.hours = byId("block-hours");
    this.error = byId("block-error");
    this.confirm = byId("block-confirm");
    this.conversationId = null;
    this.hours.max = String(config.block_max_hours);
    byId("block-form").addEventListener("submit", (e) => {
      if (e.submitter?.value !== "block") return;
      e.preventDefault(); // stay open until the server says it is done
      this.submit();
    });
    this.dialog.addEventListener("close", () => {
      this.conversationId = null;
      this.confirm.removeAttribute("aria-busy");
    });
  }

  get pending() {
    return this.dialog.open ? this.conversationId : null;
  }

  open(conversationId, about, opener) {
    this.conversationId = conversationId;
    byId("block-about").textContent = about;
    this.reason.value = "";
    this.reason.setAttribute("aria-invalid", "false");
    this.hours.value = String(this.config.block_default_hours);
    this.hours.setAttribute("aria-invalid", "false");
    this.error.hidden = true;
    this.confirm.disabled = false;
    show(this.dialog, opener, this.reason);
  }

  submit() {
    const reason = this.reason.value.trim();
    const hours = Number(this.hours.value);
    this.reason.setAttribute("aria-invalid", reason ? "false" : "true");
    const max = this.config.block_max_hours;
    const hoursOk = Number.isInteger(hours) && hours >= 1 && hours <= max;
    this.hours.setAttribute("aria-invalid", hoursOk ? "false" : "true");
    if (!reason) return this.fail(t("block_need_reason"), this.reason);
    if (!hoursOk) return this.fail(t("block_bad_hours", { max }), this.hours);
    this.error.hidden = true;
    this.confirm.setAttribute("aria-busy", "true");
    this.confirm.disabled = true;
    if (!this.send({ type: "block", conversation_id: this.conversationId, reason, hours })) {
      this.fail(t("error.offline"));
    }
  }

  fail(text, field) {
    this.error.textContent = text;
    this.error.hidden = false;
    this.confirm.disabled = false;
    this.confirm.removeAttribute("aria-busy");
    field?.focus();
  }

  done() {
    if (this.dialog.open) this.dialog.close("done");
  }
}

export class BlocksDialog {
  constructor(send, announce) {
    this.send = send;
    this.announce = announce;
    this.dialog = byId("blocks-dialog");
    this.body = byId("blocks-body");
    this.error = byId("blocks-error");
    this.items = [];
    this.body.addEventListener("click", async (e) => {
      const button = e.target.closest('button[data-action="lift"]');
      if (!button) return;
      const yes = await confirmAction({
        title: t("lift_heading"),
        body: t("lift_body", { reason: button.dataset.reason }),
        yes: t("lift_confirm"),
        opener: button,
      });
      if (yes) {
        this.error.hidden = true;
        this.send({ type: "unblock", block_id: button.dataset.id });
      }
    });
  }

  open(opener) {
    byId("blocks-loading").hidden = false;
    byId("blocks-empty").hidden = true;
    byId("blocks-table").hidden = true;
    this.error.hidden = true;
    show(this.dialog, opener, this.dialog.querySelector('button[value="close"]'));
    this.refresh();
  }

  refresh() {
    if (!this.dialog.open) return;
    if (!this.send({ type: "list_blocks" })) this.fail(t("error.offline"));
  }

  render(items) {
    this.items = items;
    byId("blocks-loading").hidden = true;
    byId("blocks-empty").hidden = items.length > 0;
    byId("blocks-table").hidden = items.length === 0;
    this.body.replaceChildren(
      ...items.map((b) =>
        h(
          "tr",
          {},
          h("td", { class: "reason", text: b.reason }),
          h("td", { text: dayAndTime(b.created_at) }),
          h("td", { text: dayAndTime(b.expires_at) }),
          h(
            "td",
            {},
            h("button", {
              class: "btn small danger-outline",
              text: t("lift"),
              attrs: {
                type: "button",
                "data-action": "lift",
                "data-id": b.block_id,
                "data-reason": b.reason,
                "aria-label": t("lift_named", { reason: b.reason.slice(0, 60) }),
              },
            }),
          ),
        ),
      ),
    );
  }

  lifted(blockId) {
    this.announce(t("lifted"));
    this.render(this.items.filter((b) => b.block_id !== blockId));
    this.refresh();
  }

  fail(text) {
    byId("blocks-loading").hidden = true;
    this.error.textContent = text;
    this.error.hidden = false;
  }
}

