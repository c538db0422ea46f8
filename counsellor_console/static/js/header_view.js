// The top bar: status, load, connection state, sound, logout.
import { byId } from "./dom.js";
import { lang, t } from "./i18n.js";
import { clearAll } from "./storage.js";

export class HeaderView {
  constructor(store, notifier) {
    this.store = store;
    this.notifier = notifier;
    this.status = byId("status-select");
    this.statusDot = byId("status-dot");
    this.load = byId("load-value");
    this.loadBox = byId("load");
    this.conn = byId("conn-status");
    this.connText = byId("conn-text");
    this.countdown = byId("conn-countdown");
    this.retry = byId("conn-retry");
    this.mute = byId("mute-btn");
    this.logout = byId("logout-btn");

    this.status.addEventListener("change", () => {
      this.status.setAttribute("aria-busy", "true");
      store.setStatus(this.status.value);
    });
    this.mute.addEventListener("click", () => this.toggleMute());
    this.logout.addEventListener("click", () => this.doLogout());
    this.renderMute();
    setInterval(() => this.renderConnection(), 1000);
  }

  toggleMute() {
    this.notifier.setMuted(!this.notifier.muted);
    this.renderMute();
  }

  renderMute() {
    // One name ("Sound"), its state as pressed or not: read out as a toggle.
    this.mute.setAttribute("aria-pressed", String(!this.notifier.muted));
    this.mute.querySelector(".state").textContent = this.notifier.muted ? t("sound_state_off") : t("sound_state_on");
    this.mute.title = t("sound_toggle_hint");
  }

  renderMe() {
    const me = this.store.me;
    this.status.removeAttribute("aria-busy");
    if (!me) return;
    if (me.status && this.status.value !== me.status) this.status.value = me.status;
    this.statusDot.dataset.status = me.status || "offline";
    const cap = this.store.capacity();
    const load = this.store.load();
    this.load.textContent = cap === null ? String(load) : `${load}/${cap}`;
    this.loadBox.title = cap === null ? "" : t("load_title", { load, cap });
    this.loadBox.classList.toggle("full", this.store.atCapacity());
  }

  renderConnection() {
    const state = this.store.connection;
    this.conn.dataset.state = state;
    // The state sentence is in a live region and changes only with the state; the countdown
    // beside it is not live, so a screen reader is not told every second.
    const text = state === "open" ? t("conn_open") : state === "waiting" ? t("conn_lost") : t("conn_connecting");
    if (this.connText.textContent !== text) this.connText.textContent = text;
    let countdown = "";
    if (state === "waiting" && this.store.retryAt) {
      const s = Math.max(0, Math.ceil((this.store.retryAt - Date.now()) / 1000));
      countdown = t("conn_retry_in", { s });
    }
    if (this.countdown.textContent !== countdown) this.countdown.textContent = countdown;
    this.retry.hidden = state !== "waiting";
  }

  async doLogout() {
    this.logout.disabled = true;
    // Close the socket first: the logout ends the session, and the server's 4401 on it
    // would otherwise race this page's own way to the login page.
    this.store.transport?.close();
    try {
      await fetch("/api/logout", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        credentials: "same-origin",
        body: "{}",
      });
    } catch {
      // Logging out must still leave the page; the session expires on the server anyway.
    }
    clearAll();
    location.assign(`/console/login?lang=${encodeURIComponent(lang)}`);
  }
}
