// New alerts are heard and seen: a chime (mutable, remembered on this computer) and the
// open-alert count in the tab's title, so a supervisor in another tab still notices.

const KEY = "alo116.floor.muted";
const MIN_GAP_MS = 2000;

export class Notice {
  constructor(button) {
    this.button = button;
    this.baseTitle = document.title;
    this.audio = null;
    this.lastSound = 0;
    this.muted = localStorage.getItem(KEY) === "1";
    this.show();
    button.addEventListener("click", () => this.setMuted(!this.muted));
    // Browsers allow sound only after a gesture on the page: prepare it on the first one.
    const unlock = () => {
      this.ensureAudio();
      if (this.audio?.state === "suspended") this.audio.resume();
    };
    window.addEventListener("pointerdown", unlock, { capture: true });
    window.addEventListener("keydown", unlock, { capture: true });
  }

  setMuted(muted) {
    this.muted = muted;
    localStorage.setItem(KEY, muted ? "1" : "0");
    this.show();
  }

  show() {
    this.button.setAttribute("aria-pressed", this.muted ? "true" : "false");
  }

  ensureAudio() {
    if (this.audio || this.muted) return;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (Ctx) this.audio = new Ctx();
  }

  /** Three rising tones for a child in danger, two for any other alert. */
  chime(severe) {
    if (this.muted) return;
    const now = Date.now();
    if (now - this.lastSound < MIN_GAP_MS) return;
    this.ensureAudio();
    if (!this.audio || this.audio.state !== "running") return;
    this.lastSound = now;
    const tones = severe ? [587.33, 739.99, 880] : [523.25, 659.25];
    tones.forEach((freq, i) => this.tone(freq, this.audio.currentTime + i * 0.18));
  }

  tone(freq, start) {
    const osc = this.audio.createOscillator();
    const gain = this.audio.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.2, start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.3);
    osc.connect(gain).connect(this.audio.destination);
    osc.start(start);
    osc.stop(start + 0.35);
  }

  /** "(2) Floor · ALO 116 111" while alerts are open. */
  setCount(open) {
    const title = open > 0 ? `(${open}) ${this.baseTitle}` : this.baseTitle;
    if (document.title !== title) document.title = title;
  }
}
