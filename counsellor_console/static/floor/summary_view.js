// The numbers across the top: queue, longest wait (ticking), chats, staff on duty, free
// places and open alerts.
import { byId } from "../js/dom.js";
import { ticking } from "./clock.js";
import { t } from "./i18n.js";

export function onDuty(staff) {
  return staff.filter((s) => s.online && s.status !== "offline");
}

/** Counsellors who could take one more chat now: available, connected, under capacity. */
export function withRoom(staff) {
  return staff.filter((s) => s.online && s.status === "available" && s.load < s.capacity);
}

export function renderSummary(floor, alertCount, config) {
  const items = floor.queue.items;
  setNumber("n-queue", floor.queue.count);
  const oldest = items.reduce((min, i) => (min === null || i.waiting_since < min ? i.waiting_since : min), null);
  const longest = byId("n-longest");
  if (oldest) ticking(longest, oldest, { warn: config.wait_alert_s / 2, alarm: config.wait_alert_s });
  else {
    ticking(longest, null);
    longest.textContent = "–";
  }
  setNumber("n-chats", floor.chats.length);
  const duty = onDuty(floor.staff);
  setNumber("n-staff", duty.length);
  const available = duty.filter((s) => s.status === "available").length;
  byId("n-available").textContent = t("stat_available", { n: available });
  const free = withRoom(floor.staff).reduce((sum, s) => sum + (s.capacity - s.load), 0);
  setNumber("n-free", free);
  byId("stat-free").dataset.level = free === 0 && floor.queue.count > 0 ? "alarm" : "";
  setNumber("n-alerts", alertCount);
  byId("stat-alerts").dataset.level = alertCount > 0 ? "alarm" : "";
  byId("stat-queue").dataset.level = floor.queue.count > 0 && free === 0 ? "warn" : "";
}

function setNumber(id, n) {
  const el = byId(id);
  const text = String(n);
  if (el.textContent !== text) el.textContent = text;
}
