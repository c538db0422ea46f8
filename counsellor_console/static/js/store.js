// The console's state and the staff protocol's client side: applies server frames, keeps the
// outbox, de-duplicates by seq and re-synchronises after every snapshot. Renders nothing.
import { handlers } from "./frames.js";
import * as storage from "./storage.js";

export const MAX_BODY = 2000;
const RESEND_AFTER_MS = 10000;
const RESUME_AGAIN_MS = 5000;
const TAKE_TIMEOUT_MS = 10000;

function newClientId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function makeChat(id) {
  return {
    id,
    status: "active",
    priority: 0,
    lang: null,
    preChat: {},
    createdAt: null,
    assignedAt: null,
    childOnline: null,
    risk: null,
    // seq -> {seq, from, body, at, clientId}; a Map keyed by seq is what makes replays harmless.
    messages: new Map(),
    // Highest seq held with no gap below it: what `resume` asks from.
    lastSeq: 0,
    maxSeq: 0,
    // client_id -> {clientId, body, state: "pending"|"failed", error?, sentAt, retryAt?}
    outbox: new Map(),
    // Child messages up to this seq were seen here (and reported with `read`).
    seenSeq: 0,
    childReadSeq: 0,
    childTyping: false,
    typingTimer: null,
    lastChildAt: null,
    ended: false,
    // Ended for us but not for the child (taken over, or requeued): said differently.
    released: false,
    endReason: null,
    resumeAskedAt: 0,
    resumeAskedFrom: -1,
    // Kept in the tab (extra.<id>): the server does not repeat these after a reload.
    // {state: "pending"|"declined"|"lapsed"|"done", to: {id, name}|null, by?}
    transfer: null,
    // A supervisor's notes to me: [{from: {id, name}, body, at}]; never the child's.
    whispers: [],
    whispersSeen: 0,
    // The child used the quick exit.
    leftQuickly: false,
    // The note a colleague handed this chat over with: {from: {id, name}|null, note}.
    handover: null,
    // Supervisors following this chat silently: id -> name (memory only).
    monitors: new Map(),
    releasedBy: null,
  };
}

const EXTRA_FIELDS = ["transfer", "whispers", "whispersSeen", "leftQuickly", "handover", "releasedBy"];
// An offer lapses on the server after two minutes; older ones kept in the tab are stale.
const OFFER_KEEP_MS = 130000;

export class Store extends EventTarget {
  constructor() {
    super();
    this.transport = null;
    this.me = null;
    this.queue = [];
    this.chats = new Map();
    this.activeId = storage.load("active", null);
    this.connection = "connecting";
    this.retryAt = null;
    this.ready = false;
    this.takePendingSince = 0;
    this.seen = storage.load("seen", {});
    this.savedOutbox = storage.load("outbox", {});
    this.composerText = storage.load("composer", {});
    // Chats colleagues offer me: conversation_id -> the transfer_offer frame (+ receivedAt).
    this.offers = new Map(
      (storage.load("offers", []) || [])
        .filter((o) => Date.now() - o.receivedAt < OFFER_KEEP_MS)
        .map((o) => [o.conversation_id, { ...o, answering: undefined }]),
    );
    setInterval(() => this.resendStale(), 2000);
    setInterval(() => this.expireOffers(), 5000);
  }

  // ---- plumbing -------------------------------------------------------------------------

  emit(what, id = null) {
    this.dispatchEvent(new CustomEvent("change", { detail: { what, id } }));
  }

  notify(kind, id = null) {
    this.dispatchEvent(new CustomEvent("notify", { detail: { kind, id } }));
  }

  /** A refusal of something the page asked for (end, transfer...), for whoever waits on it. */
  refused(context, detail) {
    this.dispatchEvent(new CustomEvent("refused", { detail: { context, ...detail } }));
  }

  fail(context, code, extra = {}) {
    this.dispatchEvent(new CustomEvent("failure", { detail: { context, code, ...extra } }));
  }

  send(msg) {
    return this.transport !== null && this.transport.send(msg);
  }

  setConnection(state, info = {}) {
    this.connection = state;
    this.retryAt = info.retryAt ?? null;
    if (state !== "open") this.ready = false;
    this.emit("connection");
  }

  persistOutbox() {
    const out = {};
    for (const chat of this.chats.values()) {
      if (chat.outbox.size) {
        out[chat.id] = [...chat.outbox.values()].map(({ clientId, body }) => ({ clientId, body }));
      }
    }
    storage.save("outbox", out);
  }

  persistExtra(chat) {
    const extra = {};
    for (const field of EXTRA_FIELDS) extra[field] = chat[field];
    storage.save(`extra.${chat.id}`, extra);
  }

  persistOffers() {
    storage.save("offers", [...this.offers.values()]);
  }

  expireOffers() {
    let changed = false;
    for (const [id, offer] of this.offers) {
      if (Date.now() - offer.receivedAt > OFFER_KEEP_MS) {
        this.offers.delete(id);
        changed = true;
      }
    }
    if (changed) {
      this.persistOffers();
      this.emit("offers");
    }
  }

  persistSeen() {
    const out = {};
    for (const chat of this.chats.values()) if (chat.seenSeq) out[chat.id] = chat.seenSeq;
    storage.save("seen", out);
  }

  // ---- derived --------------------------------------------------------------------------

  /** My chats in a stable order (by assignment time), so Alt+1..9 keep their meaning. */
  orderedChats() {
    return [...this.chats.values()].sort((a, b) => {
      const ka = a.assignedAt || a.createdAt || "";
      const kb = b.assignedAt || b.createdAt || "";
      return ka < kb ? -1 : ka > kb ? 1 : a.id < b.id ? -1 : 1;
    });
  }

  unread(chat) {
    let n = 0;
    for (const m of chat.messages.values()) if (m.from === "child" && m.seq > chat.seenSeq) n += 1;
    return n;
  }

  totalUnread() {
    let n = 0;
    for (const chat of this.chats.values()) n += this.unread(chat);
    return n;
  }

  load() {
    if (this.me && typeof this.me.load === "number") return this.me.load;
    let n = 0;
    for (const chat of this.chats.values()) if (!chat.ended) n += 1;
    return n;
  }

  capacity() {
    return this.me && typeof this.me.capacity === "number" ? this.me.capacity : null;
  }

  atCapacity() {
    const cap = this.capacity();
    return cap !== null && this.load() >= cap;
  }

  takePending() {
    return this.takePendingSince > 0 && Date.now() - this.takePendingSince < TAKE_TIMEOUT_MS;
  }

  activeChat() {
    return this.activeId ? this.chats.get(this.activeId) || null : null;
  }

  // ---- server frames --------------------------------------------------------------------

  handle(msg) {
    if (Object.hasOwn(handlers, msg.type)) handlers[msg.type].call(this, msg);
  }

  upsertChat(info) {
    const id = info.conversation_id;
    let chat = this.chats.get(id);
    if (!chat) {
      chat = makeChat(id);
      chat.seenSeq = this.seen[id] || 0;
      Object.assign(chat, storage.load(`extra.${id}`, {}) || {});
      for (const { clientId, body } of this.savedOutbox[id] || []) {
        chat.outbox.set(clientId, { clientId, body, state: "pending", sentAt: 0 });
      }
      this.chats.set(id, chat);
    }
    if (info.status) chat.status = info.status;
    if (typeof info.priority === "number") chat.priority = info.priority;
    if (info.lang) chat.lang = info.lang;
    if (info.pre_chat) chat.preChat = info.pre_chat;
    chat.createdAt = info.created_at || info.waiting_since || chat.createdAt;
    chat.assignedAt = info.assigned_at || chat.assignedAt || new Date().toISOString();
    if (typeof info.child_online === "boolean") chat.childOnline = info.child_online;
    if (info.risk_level) chat.risk = info.risk_level;
    if (typeof info.staff_read_seq === "number" && info.staff_read_seq > chat.seenSeq) {
      chat.seenSeq = info.staff_read_seq;
    }
    if (typeof info.child_read_seq === "number") {
      chat.childReadSeq = Math.max(chat.childReadSeq, info.child_read_seq);
    }
    if (chat.status === "ended" || chat.status === "closed") this.markEnded(chat, chat.endReason);
    return chat;
  }

  markEnded(chat, reason) {
    chat.ended = true;
    chat.status = "ended";
    chat.endReason = reason || chat.endReason || null;
    chat.childTyping = false;
    for (const entry of chat.outbox.values()) {
      entry.state = "failed";
      entry.error = "closed";
    }
  }

  resume(chat, force = false) {
    const now = Date.now();
    if (!force && chat.resumeAskedFrom === chat.lastSeq && now - chat.resumeAskedAt < RESUME_AGAIN_MS) {
      return;
    }
    if (this.send({ type: "resume", conversation_id: chat.id, last_seq: chat.lastSeq })) {
      chat.resumeAskedFrom = chat.lastSeq;
      chat.resumeAskedAt = now;
    }
  }

  insertMessage(chat, m) {
    if (chat.messages.has(m.seq)) return false;
    chat.messages.set(m.seq, m);
    chat.maxSeq = Math.max(chat.maxSeq, m.seq);
    while (chat.messages.has(chat.lastSeq + 1)) chat.lastSeq += 1;
    // A hole below maxSeq means a frame was dropped somewhere: fetch it from the database.
    if (chat.maxSeq > chat.lastSeq) this.resume(chat);
    return true;
  }

  flushOutbox(chat) {
    if (chat.ended) return;
    for (const entry of chat.outbox.values()) {
      if (entry.state !== "pending") continue;
      this.transmit(chat, entry);
    }
  }

  transmit(chat, entry) {
    const sent = this.send({
      type: "send",
      conversation_id: chat.id,
      client_id: entry.clientId,
      body: entry.body,
    });
    // Not sent (socket closed): sentAt stays old, and the snapshot after reconnecting sends it.
    if (sent) entry.sentAt = Date.now();
    entry.retryAt = null;
  }

  /**
   * Unacknowledged sends are repeated with the same client_id (the server stores them once).
   * A send that stays unanswered twice means the socket is dead without knowing it: reconnect.
   */
  resendStale() {
    if (!this.ready) return;
    const now = Date.now();
    let stalled = false;
    for (const chat of this.chats.values()) {
      if (chat.ended) continue;
      for (const entry of chat.outbox.values()) {
        if (entry.state !== "pending") continue;
        if (entry.retryAt) {
          if (now >= entry.retryAt) this.transmit(chat, entry);
        } else if (now - entry.sentAt > RESEND_AFTER_MS) {
          entry.tries = (entry.tries || 0) + 1;
          if (entry.tries >= 2) stalled = true;
          else this.transmit(chat, entry);
        }
      }
    }
    if (stalled) {
      for (const chat of this.chats.values()) for (const entry of chat.outbox.values()) entry.tries = 0;
      if (this.transport) this.transport.restart();
    }
  }

  // ---- actions from the page --------------------------------------------------------------

  setStatus(value) {
    if (!this.send({ type: "status", value })) {
      this.fail("status", "offline");
      this.emit("me");
    }
  }

  take(conversationId = null) {
    if (this.takePending()) return;
    const msg = conversationId ? { type: "take", conversation_id: conversationId } : { type: "take" };
    if (!this.send(msg)) {
      this.fail("take", "offline");
      return;
    }
    this.takePendingSince = Date.now();
    this.emit("queue");
    setTimeout(() => this.emit("queue"), TAKE_TIMEOUT_MS + 50);
  }

  sendMessage(id, body) {
    const chat = this.chats.get(id);
    if (!chat || chat.ended || !body.trim() || body.length > MAX_BODY) return false;
    const entry = { clientId: newClientId(), body, state: "pending", sentAt: 0 };
    chat.outbox.set(entry.clientId, entry);
    this.persistOutbox();
    if (this.ready) this.transmit(chat, entry);
    this.emit("chat", id);
    return true;
  }

  retry(id, clientId) {
    const chat = this.chats.get(id);
    const entry = chat && chat.outbox.get(clientId);
    if (!entry || chat.ended) return;
    entry.state = "pending";
    entry.error = null;
    if (this.ready) this.transmit(chat, entry);
    this.emit("chat", id);
  }

  discard(id, clientId) {
    const chat = this.chats.get(id);
    if (!chat) return;
    chat.outbox.delete(clientId);
    this.persistOutbox();
    this.emit("chat", id);
  }

  typing(id, on) {
    const chat = this.chats.get(id);
    if (chat && !chat.ended) this.send({ type: "typing", conversation_id: id, on });
  }

  /** End a chat, with an optional last message to the child; false when offline. */
  end(id, closingMessage = "") {
    const msg = { type: "end", conversation_id: id };
    if (closingMessage.trim()) msg.closing_message = closingMessage.trim();
    return this.send(msg);
  }

  /** Offer the chat to a colleague, or (no colleague) put it back at the front of the queue. */
  transfer(id, toUserId, note) {
    const msg = { type: "transfer", conversation_id: id };
    if (toUserId) msg.to_user_id = toUserId;
    if (note && note.trim()) msg.note = note.trim();
    return this.send(msg);
  }

  setTransfer(id, transfer) {
    const chat = this.chats.get(id);
    if (!chat) return;
    chat.transfer = transfer;
    this.persistExtra(chat);
    this.emit("chat", id);
    this.emit("chats");
  }

  answerOffer(id, accept) {
    const offer = this.offers.get(id);
    if (!offer) return false;
    if (!this.send({ type: accept ? "transfer_accept" : "transfer_decline", conversation_id: id })) {
      this.fail(accept ? "transfer_accept" : "transfer_decline", "offline");
      return false;
    }
    offer.answering = accept ? "accept" : "decline";
    if (accept) this.takePendingSince = Date.now(); // the chat opens when it is ours
    else this.dropOffer(id);
    this.emit("offers");
    return true;
  }

  dropOffer(id) {
    if (this.offers.delete(id)) {
      this.persistOffers();
      this.emit("offers");
    }
  }

  dismissWhispers(id) {
    const chat = this.chats.get(id);
    if (!chat) return;
    chat.whispersSeen = chat.whispers.length;
    this.persistExtra(chat);
    this.emit("chat", id);
  }

  /** Report the active chat as read, when the counsellor can actually see it. */
  markSeen(id) {
    const chat = this.chats.get(id);
    if (!chat || document.visibilityState !== "visible" || !document.hasFocus()) return;
    let top = chat.seenSeq;
    for (const m of chat.messages.values()) if (m.from === "child" && m.seq > top) top = m.seq;
    if (top <= chat.seenSeq) return;
    chat.seenSeq = top;
    this.persistSeen();
    if (!chat.ended) this.send({ type: "read", conversation_id: id, seq: chat.lastSeq });
    this.emit("chats");
  }

  activate(id) {
    if (id !== null && !this.chats.has(id)) return;
    this.activeId = id;
    storage.save("active", id);
    this.emit("active", id);
  }

  /** Remove an ended chat from the list, with everything kept for it in the tab. */
  dismiss(id) {
    const chat = this.chats.get(id);
    if (!chat || !chat.ended) return;
    clearTimeout(chat.typingTimer);
    this.chats.delete(id);
    storage.save(`extra.${id}`, null);
    this.setComposerText(id, "");
    this.persistOutbox();
    this.persistSeen();
    this.dispatchEvent(new CustomEvent("dismissed", { detail: { id } }));
    if (this.activeId === id) {
      const next = this.orderedChats().find((c) => !c.ended) || this.orderedChats()[0];
      this.activate(next ? next.id : null);
    }
    this.emit("chats");
  }

  getComposerText(id) {
    return this.composerText[id] || "";
  }

  setComposerText(id, text) {
    if (text) this.composerText[id] = text;
    else delete this.composerText[id];
    storage.save("composer", this.composerText);
  }
}
