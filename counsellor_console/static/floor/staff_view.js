// Who is on the floor: status and for how long, load against capacity, connection.
import { h, reconcile } from "../js/dom.js";
import { ticking } from "./clock.js";
import { label, t } from "./i18n.js";

export function renderStaff(els, staff) {
  els.table.hidden = staff.length === 0;
  els.empty.hidden = staff.length > 0;
  reconcile(els.body, staff, (s) => s.id, create, update);
}

function create() {
  return h(
    "tr",
    {},
    h(
      "th",
      { attrs: { scope: "row" } },
      h("span", { class: "name" }),
      " ",
      h("span", { class: "role" }),
      h("span", { class: "presence" }),
    ),
    h(
      "td",
      { class: "status" },
      h("span", { class: "status-dot", attrs: { "aria-hidden": "true" } }),
      h("span", { class: "status-text" }),
      " ",
      h("span", { class: "since quiet" }),
    ),
    h(
      "td",
      { class: "load" },
      h("span", { class: "num load-text" }),
      h("span", { class: "meter", attrs: { "aria-hidden": "true" } }, h("span", { class: "meter-fill" })),
    ),
  );
}

function update(row, member) {
  const [who, status, load] = row.children;
  who.querySelector(".name").textContent = member.name;
  const role = who.querySelector(".role");
  role.textContent = member.role === "counsellor" ? "" : label("role", member.role);
  role.className = member.role === "counsellor" ? "role" : "role tag";
  status.querySelector(".status-dot").dataset.status = member.status;
  status.querySelector(".status-text").textContent = label("status", member.status);
  ticking(status.querySelector(".since"), member.status_since);
  const full = member.load >= member.capacity;
  load.querySelector(".load-text").textContent = t("load", { n: member.load, of: member.capacity });
  const fill = load.querySelector(".meter-fill");
  fill.style.width = `${Math.min(100, Math.round((100 * member.load) / Math.max(1, member.capacity)))}%`;
  load.dataset.full = full ? "1" : "";
  const presence = who.querySelector(".presence");
  presence.className = member.online ? "presence on" : "presence off";
  presence.textContent = member.online ? t("staff_online") : t("staff_offline");
  row.dataset.status = member.status;
}
