// The /ws/staff socket: reconnects with capped, jittered backoff and reports its state.
// It knows nothing about chats; the store re-synchronises after every (re)connect.

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000, 30000];
const UNAUTHORIZED = 4401;
// App-level heartbeat: after this long without any frame, ask `ping`; after twice that,
// the socket is dead without knowing it (a half-open TCP connection): reconnect.
const QUIET_MS = 20000;

export class Connection {
  /**
   * @param {string} url
   * @param {{onMessage: (msg: object) => void, onState: (state: string, info?: object) => void,
   *          onUnauthorized: () => void}} handlers
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.socket = null;
    // Index into BACKOFF_MS; reset only once a snapshot proves the session is healthy.
    this.attempt = 0;
    this.retryTimer = null;
    this.retryAt = null;
    this.stopped = false;
    this.lastFrameAt = 0;
    window.addEventListener("online", () => this.retryNow());
    setInterval(() => this.checkAlive(), 5000);
  }

  checkAlive() {
    if (!this.isOpen()) return;
    const quiet = Date.now() - this.lastFrameAt;
    if (quiet > QUIET_MS * 2) this.restart();
    else if (quiet > QUIET_MS) this.send({ type: "ping" });
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
    this.handlers.onState("connecting");
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.lastFrameAt = Date.now();
      this.handlers.onState("open");
    });
    socket.addEventListener("message", (event) => {
      this.lastFrameAt = Date.now();
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg && typeof msg.type === "string") this.handlers.onMessage(msg);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (event.code === UNAUTHORIZED) {
        this.stopped = true;
        this.handlers.onUnauthorized();
        return;
      }
      this.scheduleRetry();
    });
  }

  /** The server accepted us (first snapshot): start the backoff from the beginning again. */
  healthy() {
    this.attempt = 0;
  }

  scheduleRetry() {
    if (this.stopped) return;
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.handlers.onState("waiting", { retryAt: this.retryAt });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /**
   * Drop a socket that looks open but carries nothing (a half-open TCP connection after a
   * network change is only noticed this way) and connect again at once.
   */
  restart() {
    if (this.stopped || !this.socket) return;
    const socket = this.socket;
    this.socket = null;
    socket.close(4000, "stalled");
    this.connect();
  }

  retryNow() {
    if (this.stopped || this.isOpen() || this.socket) return;
    this.connect();
  }

  isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Send one frame; false when the socket is not open (the caller keeps it for later). */
  send(msg) {
    if (!this.isOpen()) return false;
    this.socket.send(JSON.stringify(msg));
    return true;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close(1000);
  }
}
