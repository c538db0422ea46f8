// Sound and title notifications. Sound can be muted; the choice is remembered on this computer.
import { t } from "./i18n.js";
import { loadPref, savePref } from "./storage.js";

const MIN_GAP_MS = 1500;
// One soft tone for a message; rising tones for something to answer; falling for a loss.
const TONES = {
  queue: [523.25, 659.25],
  offer: [523.25, 659.25, 783.99],
  whisper: [587.33, 587.33],
  ended: [440],
  left_quickly: [659.25, 440],
  transfer_declined: [523.25, 440],
  offer_lapsed: [440],
  offer_requeued: [440],
  offer_ended: [440],
};

export class Notifier {
  constructor() {
    this.muted = loadPref("muted", false);
    this.audio = null;
    this.lastSound = 0;
    this.baseTitle = document.title;
    // Browsers only allow audio after a user gesture on this page: unlock on the first one.
    const unlock = () => {
      this.ensureAudio();
      if (this.audio && this.audio.state === "suspended") this.audio.resume();
    };
    window.addEventListener("pointerdown", unlock, { capture: true });
    window.addEventListener("keydown", unlock, { capture: true });
  }

  ensureAudio() {
    if (this.audio || this.muted) return;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (Ctx) this.audio = new Ctx();
  }

  setMuted(muted) {
    this.muted = muted;
    savePref("muted", muted);
  }

  /** A soft chime: one tone for a message, two rising tones for a new child in the queue. */
  play(kind) {
    if (this.muted) return;
    const now = Date.now();
    if (now - this.lastSound < MIN_GAP_MS) return;
    this.ensureAudio();
    if (!this.audio || this.audio.state !== "running") return;
    this.lastSound = now;
    const tones = TONES[kind] || [659.25];
    tones.forEach((freq, i) => this.tone(freq, this.audio.currentTime + i * 0.16));
  }

  tone(freq, start) {
    const osc = this.audio.createOscillator();
    const gain = this.audio.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.18, start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.25);
    osc.connect(gain).connect(this.audio.destination);
    osc.start(start);
    osc.stop(start + 0.3);
  }

  /** "2 new messages · 3 in queue · Console": what waits for me first, then the queue. */
  setTitle(unread, queued, offered = 0) {
    const parts = [];
    if (offered > 0) parts.push(t("title_offers", { n: offered }));
    if (unread > 0) parts.push(t(unread === 1 ? "title_unread_one" : "title_unread_other", { n: unread }));
    if (queued > 0) parts.push(t("title_queue", { n: queued }));
    parts.push(this.baseTitle);
    const title = parts.join(" · ");
    if (document.title !== title) document.title = title;
  }
}
