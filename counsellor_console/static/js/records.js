// Contact records of my chats, kept on the server (GET/PUT /api/records/{id}) and saved as
// the counsellor goes: each change waits a moment for the next keystroke, then only the
// changed fields are sent. Unsaved changes are also kept in the tab, so a reload or a
// dropped network loses nothing; a risk of high or imminent is saved at once.
import { api } from "./api.js";
import * as storage from "./storage.js";

const SAVE_AFTER_MS = 800;
const RETRY_MS = [2000, 5000, 10000, 30000];
export const URGENT_RISKS = ["high", "imminent"];

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class Records extends EventTarget {
  constructor() {
    super();
    this.entries = new Map();
  }

  emit(id) {
    this.dispatchEvent(new CustomEvent("change", { detail: { id } }));
  }

  entry(id) {
    let e = this.entries.get(id);
    if (!e) {
      e = {
        id,
        record: null,
        // field -> value not yet saved; survives a reload in sessionStorage.
        edits: storage.load(`recedits.${id}`, {}) || {},
        state: "idle", // idle | loading | ready | gone | failed
        saving: false,
        error: null, // {code, field, message} of the last refused or failed save
        savedAt: null,
        timer: null,
        retries: 0,
        inflight: null,
        loading: null,
      };
      this.entries.set(id, e);
    }
    return e;
  }

  /** Load the chat's record (created as a draft by the server on first access). */
  open(id) {
    const e = this.entry(id);
    if (e.state === "loading") return e.loading;
    if (e.state === "ready") return Promise.resolve(e);
    e.state = "loading";
    e.loading = this.load(e);
    this.emit(id);
    return e.loading;
  }

  async load(e) {
    const id = e.id;
    const answer = await api.get(`/api/records/${id}`);
    if (answer.ok) {
      e.record = answer.data;
      e.state = "ready";
      if (e.record.status === "final") this.dropEdits(e);
      else if (Object.keys(e.edits).length) this.schedule(e, 0);
    } else if (answer.status === 403 || answer.status === 404) {
      e.state = "gone";
      this.dropEdits(e);
    } else {
      e.state = "failed";
      e.error = { code: answer.error, field: null, message: answer.message };
    }
    this.emit(id);
    return e;
  }

  /** Reload from the server (after the chat ended, when the server finalised it). */
  refresh(id) {
    const e = this.entry(id);
    if (e.state === "loading") return e.loading;
    e.state = "idle";
    return this.open(id);
  }

  value(id, field) {
    const e = this.entries.get(id);
    if (!e) return undefined;
    if (Object.hasOwn(e.edits, field)) return e.edits[field];
    return e.record ? e.record[field] : undefined;
  }

  isFinal(id) {
    const e = this.entries.get(id);
    return Boolean(e && e.record && e.record.status === "final");
  }

  contactType(id) {
    return this.value(id, "contact_type") || "";
  }

  /** Change fields of the record; saved shortly (at once with `now`). */
  edit(id, patch, { now = false } = {}) {
    const e = this.entry(id);
    if (e.state === "gone" || this.isFinal(id)) return;
    for (const [field, value] of Object.entries(patch)) {
      // Back to what the server holds: nothing to send (unless a save is on its way).
      if (e.record && !e.saving && same(e.record[field], value)) delete e.edits[field];
      else e.edits[field] = value;
    }
    if (e.error && e.error.field && Object.hasOwn(patch, e.error.field)) e.error = null;
    this.persist(e);
    this.emit(id);
    this.schedule(e, now ? 0 : SAVE_AFTER_MS);
  }

  schedule(e, delay) {
    clearTimeout(e.timer);
    e.timer = setTimeout(() => this.save(e.id), delay);
  }

  /** Save what is pending now; true once the server holds every change. */
  async save(id) {
    const e = this.entry(id);
    clearTimeout(e.timer);
    if (e.inflight) await e.inflight;
    if (e.state !== "ready" && e.state !== "gone") await this.open(id);
    if (e.state === "failed" && Object.keys(e.edits).length) this.retryLater(e);
    if (e.state !== "ready") return false;
    const body = { ...e.edits };
    if (!Object.keys(body).length) return true;
    e.saving = true;
    this.emit(id);
    e.inflight = api.put(`/api/records/${id}`, body);
    const answer = await e.inflight;
    e.inflight = null;
    e.saving = false;
    if (answer.ok) {
      e.record = answer.data;
      // Only what was sent is saved; what was typed meanwhile goes in the next round.
      for (const [field, value] of Object.entries(body)) {
        if (same(e.edits[field], value)) delete e.edits[field];
      }
      e.error = null;
      e.retries = 0;
      e.savedAt = new Date().toISOString();
      this.persist(e);
      this.emit(id);
      if (Object.keys(e.edits).length) this.schedule(e, SAVE_AFTER_MS);
      return !Object.keys(e.edits).length;
    }
    e.error = { code: answer.error, field: answer.field, message: answer.message };
    if (answer.status === 422 && answer.field && Object.hasOwn(e.edits, answer.field)) {
      // The server refused one field (and so saved nothing): put that field back as it
      // was on the server, keep the error on it, and save the other changes.
      delete e.edits[answer.field];
      this.persist(e);
      if (Object.keys(e.edits).length) this.schedule(e, 0);
    } else if (answer.status === 409) {
      // Final meanwhile (the chat ended elsewhere): what the server holds is the record.
      this.dropEdits(e);
      e.state = "idle";
      this.open(id);
    } else if (answer.status === 403 || answer.status === 404) {
      this.dropEdits(e);
      e.state = "gone";
    } else {
      this.retryLater(e);
    }
    this.emit(id);
    return false;
  }

  /** Finalise the record (after its chat ended); the server refuses without a type. */
  async finalise(id) {
    if (!(await this.save(id))) return { ok: false, error: "not_saved" };
    const answer = await api.post(`/api/records/${id}/finalise`);
    const e = this.entry(id);
    if (answer.ok) {
      e.record = answer.data;
      e.error = null;
    } else {
      e.error = { code: answer.error, field: answer.field, message: answer.message };
    }
    this.emit(id);
    return answer;
  }

  /** The chat's live risk changed elsewhere (another tab, a supervisor). */
  riskChanged(id, level) {
    const e = this.entries.get(id);
    if (!e || !e.record || Object.hasOwn(e.edits, "risk_level")) return;
    if (e.record.risk_level === level) return;
    e.record = { ...e.record, risk_level: level };
    this.emit(id);
  }

  /** Offline or the server is busy: nothing was saved; try again, a bit later each time. */
  retryLater(e) {
    const wait = RETRY_MS[Math.min(e.retries, RETRY_MS.length - 1)];
    e.retries += 1;
    this.schedule(e, wait);
  }

  pending(id) {
    const e = this.entries.get(id);
    return Boolean(e && (e.saving || Object.keys(e.edits).length));
  }

  dropEdits(e) {
    clearTimeout(e.timer);
    e.edits = {};
    this.persist(e);
  }

  forget(id) {
    const e = this.entries.get(id);
    if (e) clearTimeout(e.timer);
    this.entries.delete(id);
    storage.save(`recedits.${id}`, null);
  }

  persist(e) {
    storage.save(`recedits.${e.id}`, Object.keys(e.edits).length ? e.edits : null);
  }
}
