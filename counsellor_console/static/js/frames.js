// Server frames of /ws/staff, one handler per `type`, each called with the Store as `this`.
// Replays are harmless by construction: messages are keyed by seq, sends by client_id.

const RETRY_LATER_MS = 3000;
const TYPING_EXPIRES_MS = 8000;
// Replayed history (after a reload) is not news: only recent child messages ring.
const NOTIFY_WINDOW_MS = 120000;
// Why an offer made to me went, as the notice to give (a decline of my own needs none).
const OFFER_GONE_NOTICE = {
  timeout: "offer_lapsed",
  takeover: "offer_withdrawn",
  requeued: "offer_requeued",
  ended: "offer_ended",
};
// Why my own offer went that is news in itself; any other reason (taken over, back to the
// queue, ended) comes with its own `released` or `ended`, and the offer simply ends with it.
const DECLINED_STATES = { declined: "declined", timeout: "lapsed" };

export const handlers = {
  snapshot(s) {
    this.me = s.me || this.me;
    this.queue = Array.isArray(s.queue) ? s.queue : (s.queue && s.queue.items) || [];
    const present = new Set();
    for (const info of s.chats || []) {
      const chat = this.upsertChat(info);
      present.add(info.conversation_id);
      // The transfer this chat waits on, as the server has it (a server without the field
      // says nothing, and the tab keeps what it knew): resolved while away, it is gone.
      if (Object.hasOwn(info, "transfer_pending")) {
        const waiting = info.transfer_pending;
        if (waiting) chat.transfer = { state: "pending", to: waiting.to || null };
        else if (chat.transfer && ["pending", "sending"].includes(chat.transfer.state)) chat.transfer = null;
      }
      if (info.handover) chat.handover = { from: info.handover.from || null, note: info.handover.note || "" };
      this.persistExtra(chat);
    }
    // A chat we held that the server no longer lists ended (or moved) while we were away.
    for (const chat of this.chats.values()) {
      if (!present.has(chat.id) && !chat.ended) this.markEnded(chat, "gone");
    }
    this.ready = true;
    if (Array.isArray(s.offers)) {
      // The offers still waiting for me, as the server has them: one withdrawn while away
      // goes, one made while away (or before this tab opened) comes.
      const known = this.offers;
      this.offers = new Map();
      for (const offer of s.offers) {
        const before = known.get(offer.conversation_id);
        this.offers.set(offer.conversation_id, { ...offer, receivedAt: before ? before.receivedAt : Date.now() });
        if (!before) this.notify("offer", offer.conversation_id);
      }
    }
    // An offer whose chat is mine by now was accepted (in another tab, say).
    for (const id of present) this.offers.delete(id);
    this.persistOffers();
    for (const id of present) {
      const chat = this.chats.get(id);
      this.resume(chat, true);
      this.flushOutbox(chat);
    }
    this.persistOutbox();
    if (!this.activeId || !this.chats.has(this.activeId)) {
      const first = this.orderedChats().find((c) => !c.ended);
      this.activeId = first ? first.id : null;
    }
    this.queueIds = new Set(this.queue.map((q) => q.conversation_id));
    this.emit("snapshot");
  },

  queue(q) {
    this.queue = q.items || [];
    const before = this.queueIds || new Set();
    this.queueIds = new Set(this.queue.map((item) => item.conversation_id));
    const fresh = this.queue.filter((item) => !before.has(item.conversation_id));
    if (fresh.length) this.notify("queue", fresh[0].conversation_id);
    this.emit("queue");
  },

  me(m) {
    this.me = { ...this.me, ...m };
    delete this.me.type;
    this.emit("me");
  },

  assigned(a) {
    const waiting = this.queue.find((q) => q.conversation_id === a.conversation_id);
    const chat = this.upsertChat({ ...a, status: "active" });
    if (waiting && typeof waiting.child_online === "boolean" && chat.childOnline === null) {
      chat.childOnline = waiting.child_online;
    }
    chat.ended = false;
    chat.released = false;
    chat.endReason = null;
    chat.releasedBy = null;
    chat.transfer = null;
    const offer = this.offers.get(a.conversation_id);
    // Handed over by a colleague; back from the queue with a note, `handover` follows.
    chat.handover = null;
    if (a.transfer) {
      chat.handover = { from: offer ? offer.from : null, note: a.transfer.note || "" };
      if (offer && offer.risk_level) chat.risk = offer.risk_level;
    }
    if (offer) {
      this.offers.delete(a.conversation_id);
      this.persistOffers();
      this.emit("offers");
    }
    this.persistExtra(chat);
    // The server replays the whole history after `assigned` by itself: no resume needed.
    this.queue = this.queue.filter((q) => q.conversation_id !== a.conversation_id);
    const mine = this.takePending();
    this.takePendingSince = 0;
    this.emit("queue");
    this.emit("chats");
    if (mine || !this.activeChat() || this.activeChat().ended) {
      this.activate(chat.id);
      this.dispatchEvent(new CustomEvent("opened", { detail: { id: chat.id } }));
    }
  },

  handover(hv) {
    // The note a colleague sent this chat back to the queue with, for me who took it.
    const chat = this.chats.get(hv.conversation_id);
    if (!chat) return;
    chat.handover = { from: hv.from || null, note: hv.note || "" };
    this.persistExtra(chat);
    this.emit("chat", chat.id);
  },

  msg(m) {
    const chat = this.chats.get(m.conversation_id);
    if (!chat) return;
    const message = { seq: m.seq, from: m.from, body: m.body, at: m.at, clientId: m.client_id };
    // Risk words the server found in a child's message (consoles only; never the child).
    if (m.risk && typeof m.risk.level === "string") message.risk = m.risk;
    if (m.client_id && chat.outbox.delete(m.client_id)) this.persistOutbox();
    const fresh = this.insertMessage(chat, message);
    if (fresh && m.from === "child") {
      chat.childTyping = false;
      if (!chat.lastChildAt || m.at > chat.lastChildAt) chat.lastChildAt = m.at;
      const recent = Date.now() - Date.parse(m.at) < NOTIFY_WINDOW_MS;
      if (m.seq > chat.seenSeq && recent) this.notify("message", chat.id);
    }
    this.emit("chat", chat.id);
    this.emit("chats");
  },

  ack(a) {
    const chat = this.chats.get(a.conversation_id);
    if (!chat) return;
    const entry = chat.outbox.get(a.client_id);
    if (entry) {
      chat.outbox.delete(a.client_id);
      this.persistOutbox();
      this.insertMessage(chat, {
        seq: a.seq,
        from: "counsellor",
        body: entry.body,
        at: a.at,
        clientId: a.client_id,
      });
    }
    this.emit("chat", chat.id);
  },

  read(r) {
    const chat = this.chats.get(r.conversation_id);
    if (!chat) return;
    if (r.from && r.from !== "child") {
      // Read in another tab of ours: the unread count follows, so both tabs agree.
      if (r.seq > chat.seenSeq) {
        chat.seenSeq = r.seq;
        this.persistSeen();
        this.emit("chats");
      }
      return;
    }
    if (r.seq <= chat.childReadSeq) return;
    chat.childReadSeq = r.seq;
    this.emit("chat", chat.id);
  },

  typing(tp) {
    const chat = this.chats.get(tp.conversation_id);
    if (!chat || (tp.from && tp.from !== "child")) return;
    clearTimeout(chat.typingTimer);
    chat.childTyping = Boolean(tp.on) && !chat.ended;
    // An "off" frame can be lost with a dropped connection; the indicator must not stick.
    if (chat.childTyping) {
      chat.typingTimer = setTimeout(() => {
        chat.childTyping = false;
        this.emit("typing", chat.id);
      }, TYPING_EXPIRES_MS);
    }
    this.emit("typing", chat.id);
  },

  risk(r) {
    // A risk flag set on this chat (here, in another tab, or by a supervisor).
    const chat = this.chats.get(r.conversation_id);
    if (!chat) return;
    chat.risk = r.level;
    if (typeof r.priority === "number") chat.priority = r.priority;
    this.dispatchEvent(new CustomEvent("risk", { detail: { id: chat.id, level: r.level } }));
    this.emit("chat", chat.id);
    this.emit("chats");
  },

  presence(p) {
    const chat = this.chats.get(p.conversation_id);
    if (!chat) return;
    chat.childOnline = p.child === "online";
    if (p.child === "left_quickly" && !chat.leftQuickly) {
      chat.leftQuickly = true;
      this.persistExtra(chat);
      this.notify("left_quickly", chat.id);
    }
    if (!chat.childOnline) chat.childTyping = false;
    this.emit("chat", chat.id);
    this.emit("chats");
  },

  released(r) {
    // Transferred, taken over by a supervisor, or requeued after our connection was lost:
    // no longer ours (the child's chat goes on with someone else).
    const chat = this.chats.get(r.conversation_id);
    if (!chat) return;
    this.markEnded(chat, r.reason);
    chat.released = true;
    chat.releasedBy = r.by || null;
    if (r.reason === "transferred" && chat.transfer) chat.transfer = { ...chat.transfer, state: "done" };
    this.persistExtra(chat);
    this.persistOutbox();
    if (r.reason !== "transferred") this.notify("ended", chat.id);
    this.emit("chat", chat.id);
    this.emit("chats");
  },

  transfer_offer(o) {
    // A colleague offers me one of their chats: accept or decline (it lapses otherwise).
    this.offers.set(o.conversation_id, { ...o, receivedAt: Date.now() });
    delete this.offers.get(o.conversation_id).type;
    this.persistOffers();
    this.notify("offer", o.conversation_id);
    this.emit("offers");
  },

  transfer_withdrawn(w) {
    // The offer will never be answered, whatever the reason: its card goes.
    const offer = this.offers.get(w.conversation_id);
    if (!offer) return;
    this.dropOffer(w.conversation_id);
    const notice = Object.hasOwn(OFFER_GONE_NOTICE, w.reason) ? OFFER_GONE_NOTICE[w.reason] : null;
    if (notice) this.notify(notice, w.conversation_id);
  },

  transfer_pending(p) {
    this.setTransfer(p.conversation_id, { state: "pending", to: p.to || null });
  },

  transfer_declined(d) {
    const chat = this.chats.get(d.conversation_id);
    if (!chat) return;
    if (!Object.hasOwn(DECLINED_STATES, d.reason)) {
      this.setTransfer(chat.id, null);
      return;
    }
    const to = (chat.transfer && chat.transfer.to) || d.by || null;
    this.setTransfer(chat.id, { state: DECLINED_STATES[d.reason], to });
    this.notify("transfer_declined", chat.id);
  },

  whisper(w) {
    const chat = this.chats.get(w.conversation_id);
    if (!chat) return;
    if (chat.whispers.some((x) => x.at === w.at && x.body === w.body)) return; // a repeat
    chat.whispers.push({ from: w.from || null, body: w.body, at: w.at });
    this.persistExtra(chat);
    this.notify("whisper", chat.id);
    this.emit("chat", chat.id);
    this.emit("chats");
  },

  monitored(m) {
    const chat = this.chats.get(m.conversation_id);
    if (!chat || !m.by) return;
    if (m.on) chat.monitors.set(m.by.id, m.by.name);
    else chat.monitors.delete(m.by.id);
    this.emit("chat", chat.id);
  },

  pong() {
    // The connection counts every frame as a sign of life; nothing else to do.
  },

  ended(e) {
    const chat = this.chats.get(e.conversation_id);
    if (!chat) return;
    this.markEnded(chat, e.reason);
    this.persistOutbox();
    if (chat.id !== this.activeId) this.notify("ended", chat.id);
    this.emit("chat", chat.id);
    this.emit("chats");
  },

  error(e) {
    const context = e.in_reply_to || (e.client_id ? "send" : "");
    const chat = e.conversation_id ? this.chats.get(e.conversation_id) : null;
    if (context === "send" && chat && e.client_id && chat.outbox.has(e.client_id)) {
      const entry = chat.outbox.get(e.client_id);
      if (e.code === "unavailable" || e.code === "rate_limited") {
        entry.retryAt = Date.now() + RETRY_LATER_MS; // nothing stored: the sweep sends it again
      } else {
        entry.state = "failed";
        entry.error = e.code;
        if (e.code === "closed") this.markEnded(chat, chat.endReason);
      }
      this.emit("chat", chat.id);
      this.emit("chats");
      return;
    }
    if (context === "take") {
      this.takePendingSince = 0;
      this.emit("queue");
      this.fail("take", e.code, { reason: e.reason, atCapacity: this.atCapacity() });
      return;
    }
    if (["end", "transfer", "transfer_accept", "transfer_decline"].includes(context)) {
      if (context === "transfer_accept") {
        this.takePendingSince = 0;
        const offer = e.conversation_id && this.offers.get(e.conversation_id);
        if (offer) delete offer.answering;
        if (offer && e.reason !== "at_capacity") this.dropOffer(e.conversation_id);
        this.emit("offers");
      }
      this.refused(context, {
        id: e.conversation_id || null,
        code: e.code,
        field: e.field || null,
        reason: e.reason || null,
        message: e.message || "",
      });
      return;
    }
    if (context === "resume" && chat && (e.code === "not_found" || e.code === "forbidden")) {
      this.markEnded(chat, "gone");
      this.emit("chat", chat.id);
      this.emit("chats");
      return;
    }
    if (context === "typing" || context === "read") return; // harmless, nothing to tell
    if (context === "status") this.emit("me");
    this.fail(context || "generic", e.code);
  },
};
