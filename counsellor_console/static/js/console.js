// Entry point of the console page: wires the socket, the store and the views together.
import { ChatsView } from "./chats_view.js";
import { ChatView } from "./chat_view.js";
import { Connection } from "./connection.js";
import { byId } from "./dom.js";
import { EndDialog } from "./end_dialog.js";
import { HeaderView } from "./header_view.js";
import { label, lang, t } from "./i18n.js";
import { installShortcuts } from "./keyboard.js";
import { Notifier } from "./notify.js";
import { Palette } from "./palette.js";
import { QueueView } from "./queue_view.js";
import { Records } from "./records.js";
import { RecordView } from "./record_view.js";
import { Store } from "./store.js";
import { startTicker, tick } from "./time.js";
import { OffersView, TransferDialog } from "./transfer_view.js";

const store = new Store();
const records = new Records();
const notifier = new Notifier();
const header = new HeaderView(store, notifier);
const queueView = new QueueView(store);
const chatsView = new ChatsView(store, records);
const recordView = new RecordView(store, records);
const chatView = new ChatView(store);
const offersView = new OffersView(store);
const palette = new Palette(store, chatView.composer);
const backToChat = () => {
  const chat = store.activeChat();
  if (chat && !chat.ended) chatView.composer.focus();
  else if (chat && !byId("dismiss-chat").hidden) byId("dismiss-chat").focus();
  else byId("chat-main").focus();
};
const endDialog = new EndDialog(store, records, backToChat);
const transferDialog = new TransferDialog(store, records, backToChat);
const alerts = byId("alerts");
const endedSeen = new Set();

let alertTimer = null;

function say(text) {
  alerts.textContent = "";
  clearTimeout(alertTimer);
  requestAnimationFrame(() => {
    alerts.textContent = text;
  });
  alertTimer = setTimeout(() => {
    alerts.textContent = "";
  }, 10000);
}

alerts.addEventListener("click", () => {
  alerts.textContent = "";
});

function updateTitle() {
  notifier.setTitle(store.totalUnread(), store.queue.length, store.offers.size);
}

function renderAll() {
  header.renderMe();
  header.renderConnection();
  offersView.render();
  queueView.render();
  chatsView.render();
  chatView.render(true);
  recordView.render();
  updateTitle();
  tick();
}

function openChat(id) {
  store.activate(id);
  chatView.composer.focus();
  if (!document.activeElement || document.activeElement === document.body) byId("chat-main").focus();
}

/** Every chat's record is loaded in the background: its risk shows in the lists. */
function loadRecords() {
  for (const chat of store.chats.values()) {
    records.open(chat.id).then((e) => {
      if (e.state !== "ready") return;
      if (!chat.risk && e.record.risk_level) {
        chat.risk = e.record.risk_level;
        store.emit("chats");
        if (chat.id === store.activeId) chatView.render(true);
      } else if (chat.risk && e.record.risk_level !== chat.risk) {
        // Flagged live (by a supervisor, say) since the record was saved: show it as live.
        records.riskChanged(chat.id, chat.risk);
        if (chat.id === store.activeId) recordView.fill(false);
      }
    });
  }
}

store.addEventListener("change", (e) => {
  const { what, id } = e.detail;
  switch (what) {
    case "snapshot":
      connection.healthy();
      renderAll();
      store.markSeen(store.activeId);
      loadRecords();
      break;
    case "connection":
      header.renderConnection();
      queueView.render();
      break;
    case "me":
      header.renderMe();
      queueView.render();
      break;
    case "queue":
      queueView.render();
      header.renderMe();
      updateTitle();
      break;
    case "offers":
      offersView.render();
      updateTitle();
      break;
    case "chats":
      chatsView.render();
      header.renderMe();
      queueView.render();
      updateTitle();
      break;
    case "active":
      palette.close(false);
      chatsView.render();
      chatView.render(true);
      recordView.render();
      store.markSeen(id);
      break;
    case "chat":
      if (id === store.activeId) {
        chatView.render(true);
        recordView.fill(false);
        store.markSeen(id);
      }
      if (store.chats.has(id) && store.chats.get(id).ended && !endedSeen.has(id)) {
        // Ended: the server has finalised the record if it had a contact type.
        endedSeen.add(id);
        records.refresh(id);
      }
      chatsView.render();
      updateTitle();
      break;
    case "typing":
      if (id === store.activeId) chatView.render(false);
      break;
    default:
      break;
  }
  tick();
});

records.addEventListener("change", () => chatsView.render());
store.addEventListener("opened", (e) => {
  chatView.composer.focus();
  records.open(e.detail.id);
});
store.addEventListener("dismissed", (e) => records.forget(e.detail.id));
store.addEventListener("risk", (e) => records.riskChanged(e.detail.id, e.detail.level));

store.addEventListener("notify", (e) => {
  const { kind, id } = e.detail;
  const visible = document.visibilityState === "visible" && document.hasFocus();
  if (kind === "message" && id === store.activeId && visible) return;
  if (kind === "queue" && (!store.me || store.me.status !== "available")) return;
  notifier.play(kind);
  const chat = id ? store.chats.get(id) : null;
  const n = chat ? store.orderedChats().indexOf(chat) + 1 : 0;
  if (kind === "ended" && id !== store.activeId) say(t("notice_chat_ended_n", { n }));
  else if (kind === "offer") {
    const offer = store.offers.get(id);
    say(t("notice_offer", { name: (offer && offer.from && offer.from.name) || t("offer_someone") }));
  } else if (kind === "offer_lapsed") say(t("notice_offer_lapsed"));
  else if (kind === "offer_withdrawn") say(t("notice_offer_taken_over"));
  else if (kind === "offer_requeued") say(t("notice_offer_requeued"));
  else if (kind === "offer_ended") say(t("notice_offer_ended"));
  else if (kind === "whisper" && chat) {
    const w = chat.whispers[chat.whispers.length - 1];
    say(t("notice_whisper", { n, name: (w.from && w.from.name) || t("whisper_supervisor"), body: w.body }));
  } else if (kind === "left_quickly") say(t("notice_left_quickly_n", { n }));
  else if (kind === "transfer_declined" && chat) {
    const to = chat.transfer && chat.transfer.to ? chat.transfer.to.name : "";
    say(t(chat.transfer && chat.transfer.state === "lapsed" ? "notice_transfer_lapsed" : "notice_transfer_declined", { name: to }));
  }
});

store.addEventListener("refused", (e) => {
  const d = e.detail;
  // The end and transfer dialogs answer their own refusals while they wait for them.
  if (d.handled) return;
  if (d.context === "transfer_accept") {
    if (d.reason === "at_capacity") say(t("offer_refused_capacity"));
    else say(t("offer_refused_gone"));
    return;
  }
  if (d.context === "end" && d.code === "conflict" && d.field === "contact_type") {
    say(t("end_refused_no_type"));
    return;
  }
  say(label("error", d.code, t("error.generic")));
});

store.addEventListener("failure", (e) => {
  const { context, code, reason, atCapacity } = e.detail;
  let text;
  if (code === "offline") text = t("error_offline");
  else if (context === "take" && reason) text = label("take_refused", reason, t("error.generic"));
  else if (context === "take" && code === "conflict") {
    text = atCapacity ? t("error_take_capacity") : t("error_take_taken");
  } else if (context === "take" && code === "not_found") text = t("error_take_gone");
  else if (context === "end" && code === "closed") text = t("error_end_closed");
  else {
    text = label("error", code, t("error.generic"));
  }
  say(text);
});

// Reading happens when the counsellor comes back to the window.
for (const event of ["focus", "visibilitychange"]) {
  window.addEventListener(event, () => {
    if (store.activeId) store.markSeen(store.activeId);
  });
}
// Unsaved record changes go out before the page does (a reload keeps them in the tab too).
window.addEventListener("pagehide", () => {
  for (const id of store.chats.keys()) if (records.pending(id)) records.save(id);
});

byId("end-chat").addEventListener("click", () => endDialog.open());
byId("transfer-chat").addEventListener("click", () => transferDialog.open());

const scheme = location.protocol === "https:" ? "wss" : "ws";
const connection = new Connection(`${scheme}://${location.host}/ws/staff`, {
  onMessage: (msg) => store.handle(msg),
  onState: (state, info) => store.setConnection(state, info),
  onUnauthorized: () => location.assign(`/console/login?lang=${encodeURIComponent(lang)}`),
});
store.transport = connection;
byId("conn-retry").addEventListener("click", () => connection.retryNow());

installShortcuts({
  store,
  takeNext: () => queueView.takeNextChat(),
  openChat,
  toggleMute: () => header.toggleMute(),
  focusRecord: () => recordView.focus(),
  transfer: () => transferDialog.open(),
  end: () => endDialog.open(),
  resources: () => palette.open("resources"),
  offers: () => offersView.focusFirst(),
});

startTicker();
renderAll();
connection.connect();
