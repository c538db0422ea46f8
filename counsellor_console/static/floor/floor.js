// The supervisor's floor: one /ws/staff connection, the live `floor` frame rendered into
// the summary, chats, queue, alerts and staff; actions sent as protocol frames.
import { Connection } from "../js/connection.js";
import { byId } from "../js/dom.js";
import { alertWords, isSevere, renderAlerts } from "./alerts_view.js";
import { renderChats } from "./chats_view.js";
import { dayAndTime, startTicker, syncTo } from "./clock.js";
import { AssignDialog, BlockDialog, BlocksDialog, confirmAction } from "./dialogs.js";
import { has, lang, t } from "./i18n.js";
import { MonitorPanel } from "./monitor.js";
import { Notice } from "./notice.js";
import { aboutOf, renderQueue } from "./queue_view.js";
import { renderStaff } from "./staff_view.js";
import { renderSummary } from "./summary_view.js";

const STALLED_MS = 35000; // the server sends the floor at least every heartbeat (~10 s)
const PING_MS = 15000;
const FLASH_MS = 12000;

const config = JSON.parse(byId("floor-config").textContent);
const els = {
  chats: { table: byId("chats-table"), body: byId("chats-body"), empty: byId("chats-empty") },
  queue: { table: byId("queue-table"), body: byId("queue-body"), empty: byId("queue-empty") },
  staff: { table: byId("staff-table"), body: byId("staff-body"), empty: byId("staff-empty") },
  alerts: { list: byId("alerts-list"), empty: byId("alerts-empty") },
};

const state = {
  floor: null,
  alerts: new Map(), // open alerts by id
  known: new Set(), // alert ids already announced, so a refresh does not chime again
  pendingAssign: new Map(), // conversation id -> counsellor name, until the floor shows it
  seenFloor: false, // alerts open when the page loads are shown, not chimed
  takingOver: new Set(), // take-overs sent from this page, until `assigned` confirms them
};

const scheme = location.protocol === "https:" ? "wss" : "ws";
const connection = new Connection(`${scheme}://${location.host}/ws/staff`, {
  onMessage: receive,
  onState: showConnection,
  onUnauthorized: () => location.assign(`/console/login?lang=${encodeURIComponent(lang)}`),
});
let lastFrameAt = Date.now();
let flashTimer = null;

const send = (frame) => connection.send(frame);
const notice = new Notice(byId("mute-btn"));
const monitor = new MonitorPanel({
  send,
  me: config.me,
  lang,
  onChange: render,
  announce,
  onTakeover: (chat) => takeover(chat, byId("takeover-btn")),
  onBlock: (chat, opener) => blockDialog.open(chat.conversation_id, t("block_about_chat", { name: chat.counsellor.name }), opener),
});
const assignDialog = new AssignDialog((item, userId, name) => {
  state.pendingAssign.set(item.conversation_id, name);
  if (!send({ type: "assign", conversation_id: item.conversation_id, to_user_id: userId })) flash(t("error.offline"));
});
const blockDialog = new BlockDialog(send, config);
const blocksDialog = new BlocksDialog(send, announce);

// --- frames ---------------------------------------------------------------------------------

function receive(frame) {
  lastFrameAt = Date.now();
  switch (frame.type) {
    case "snapshot":
      connection.healthy();
      monitor.resume();
      blocksDialog.refresh();
      return;
    case "floor":
      syncTo(frame.at);
      takeFloor(frame);
      return;
    case "alert":
      takeAlert(frame);
      return;
    case "blocked":
      blockDialog.done();
      flash(t("blocked_until", { until: dayAndTime(frame.expires_at) }), "ok");
      blocksDialog.refresh();
      return;
    case "blocks":
      blocksDialog.render(frame.items);
      return;
    case "unblocked":
      blocksDialog.lifted(frame.block_id);
      return;
    case "error":
      showError(frame);
      return;
    case "assigned":
      // Also sent when this supervisor takes a chat in the console: only a take-over from
      // this page is confirmed here.
      if (!monitor.handle(frame) && state.takingOver.delete(frame.conversation_id)) {
        flash(t("takeover_done"), "ok", true);
      }
      return;
    default:
      if (frame.conversation_id) monitor.handle(frame);
  }
}

function takeFloor(floor) {
  state.floor = floor;
  const first = !state.seenFloor;
  state.seenFloor = true;
  const open = new Map(floor.alerts.filter((a) => !a.acked).map((a) => [a.id, a]));
  for (const alert of open.values()) {
    if (!state.known.has(alert.id) && !first) newAlert(alert);
    state.known.add(alert.id);
  }
  state.alerts = open;
  for (const [cid, name] of state.pendingAssign) {
    if (floor.chats.some((c) => c.conversation_id === cid)) {
      flash(t("assigned_to", { name }), "ok");
      state.pendingAssign.delete(cid);
    } else if (!floor.queue.items.some((q) => q.conversation_id === cid)) {
      state.pendingAssign.delete(cid);
    }
  }
  render();
}

function takeAlert(alert) {
  if (alert.acked) {
    state.alerts.delete(alert.id);
  } else {
    const open = state.alerts.get(alert.id);
    // New, re-opened (acknowledged, then the risk rose), or its risk level changed.
    if (!state.known.has(alert.id) || !open || open.level !== alert.level) newAlert(alert);
    state.known.add(alert.id);
    state.alerts.set(alert.id, alert);
  }
  render();
}

function newAlert(alert) {
  const severe = isSevere(alert);
  notice.chime(severe);
  const text = t("alert_new", { what: alertWords(alert) });
  if (severe) byId("announce-urgent").textContent = text;
  else announce(text);
}

function render() {
  const floor = state.floor;
  if (!floor) return;
  const alerts = [...state.alerts.values()];
  renderSummary(floor, alerts.length, config);
  renderChats(els.chats, floor.chats, { monitoring: monitor.cid, config });
  renderQueue(els.queue, floor.queue.items, { config });
  const focusInAlerts = els.alerts.list.contains(document.activeElement);
  renderAlerts(els.alerts, alerts, floor.chats, floor.queue.items);
  if (focusInAlerts && !els.alerts.list.contains(document.activeElement)) {
    (els.alerts.list.querySelector('[data-action="ack"]') || byId("alerts-heading")).focus();
  }
  renderStaff(els.staff, floor.staff);
  monitor.update(floor);
  notice.setCount(alerts.length);
}

function showError(frame) {
  const text = errorText(frame);
  const about = frame.in_reply_to;
  if (about === "block" && blockDialog.pending) return blockDialog.fail(text);
  if (about === "unblock" || about === "list_blocks") return blocksDialog.fail(text);
  if (about === "monitor" && frame.conversation_id === monitor.cid) {
    monitor.stop();
    return flash(text);
  }
  if ((about === "whisper" || about === "takeover") && frame.conversation_id === monitor.cid) {
    return monitor.handle({ ...frame, text });
  }
  if (about === "assign") state.pendingAssign.delete(frame.conversation_id);
  if (about === "takeover") state.takingOver.delete(frame.conversation_id);
  flash(text);
}

function errorText(frame) {
  // A finer reason says more than the code: an assign refused `at_capacity` is a conflict,
  // but not "the child is no longer waiting"; an unknown reason falls back to the code.
  const keys = frame.reason
    ? [`error.reason.${frame.reason}`, `error.${frame.code}`]
    : [`error.${frame.in_reply_to}.${frame.code}`, `error.${frame.code}`];
  for (const key of keys) {
    if (has(key)) return t(key);
  }
  return t("error.generic");
}

// --- actions --------------------------------------------------------------------------------

function chatOf(cid) {
  return state.floor?.chats.find((c) => c.conversation_id === cid);
}

function queued(cid) {
  return state.floor?.queue.items.find((q) => q.conversation_id === cid);
}

async function takeover(chat, opener) {
  const yes = await confirmAction({
    title: t("takeover_heading"),
    body: t("takeover_body", { name: chat.counsellor.name || t("counsellor_unknown") }),
    yes: t("takeover_confirm"),
    opener,
  });
  if (!yes) return;
  state.takingOver.add(chat.conversation_id);
  if (!send({ type: "takeover", conversation_id: chat.conversation_id })) flash(t("error.offline"));
}

els.chats.body.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-action]");
  const chat = button && chatOf(button.closest("tr").dataset.key);
  if (!chat) return;
  if (button.dataset.action === "monitor") {
    if (monitor.cid === chat.conversation_id) monitor.stop();
    else monitor.start(chat, button);
  } else if (button.dataset.action === "takeover") {
    takeover(chat, button);
  }
});

els.queue.body.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-action]");
  const item = button && queued(button.closest("tr").dataset.key);
  if (!item) return;
  if (button.dataset.action === "assign") assignDialog.open(item, state.floor.staff, button);
  else if (button.dataset.action === "block") {
    const about = t("block_about_queue", { n: item.position, about: aboutOf(item) });
    blockDialog.open(item.conversation_id, about, button);
  }
});

els.alerts.list.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-action]");
  if (!button) return;
  const li = button.closest("li");
  if (button.dataset.action === "ack") {
    button.setAttribute("aria-busy", "true");
    if (!send({ type: "alert_ack", alert_id: li.dataset.key })) flash(t("error.offline"));
  } else if (button.dataset.action === "monitor") {
    const chat = chatOf(li.dataset.conversation);
    if (chat) monitor.start(chat, button);
  }
});

byId("blocks-btn").addEventListener("click", (e) => blocksDialog.open(e.currentTarget));

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && monitor.isOpen && !document.querySelector("dialog[open]") && !e.defaultPrevented) {
    monitor.stop();
  }
});

// --- status ---------------------------------------------------------------------------------

function showConnection(kind) {
  const box = byId("conn");
  box.dataset.state = kind;
  const text = kind === "open" ? t("conn_open") : kind === "waiting" ? t("conn_waiting") : t("conn_connecting");
  byId("conn-text").textContent = text;
}

function announce(text) {
  const region = byId("announce");
  region.textContent = "";
  // A fresh text node after a tick, so the same words twice are announced twice.
  setTimeout(() => (region.textContent = text), 50);
}

/** A visible notice under the numbers, spoken too: errors at once, confirmations politely. */
function flash(text, kind = "error", consoleLink = false) {
  const box = byId("flash");
  box.className = `flash ${kind}`;
  box.textContent = text;
  if (consoleLink) {
    const link = document.createElement("a");
    link.href = `/console?lang=${encodeURIComponent(lang)}`;
    link.textContent = t("open_console");
    box.append(" ", link);
  }
  if (kind === "error") byId("announce-urgent").textContent = text;
  else announce(text);
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => {
    box.textContent = "";
    box.className = "flash";
  }, FLASH_MS);
}

setInterval(() => {
  if (connection.isOpen() && Date.now() - lastFrameAt > STALLED_MS) connection.restart();
  else send({ type: "ping" });
}, PING_MS);

startTicker(document);
connection.connect();
