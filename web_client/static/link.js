// The connection to /ws/child: reconnects with backoff and jitter, resumes with hello,
// and delivers the outbox one message at a time so order survives retries. The server
// dedupes by client_id, so resending after a drop never doubles a message.

const MAX_DELAY = 30000; // backoff cap, ms
const ACK_WAIT = 15000; // no ack by then: the socket is probably dead (phone changed network)

export const newId = () =>
  crypto.randomUUID?.() ??
  Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) =>
    b.toString(16).padStart(2, '0'),
  ).join('');

export class Link {
  // hooks: hello() -> the hello frame; frame(obj) for every frame after parsing;
  // state('connecting'|'open'|'down'); changed() after the outbox changed.
  constructor(url, outbox, hooks) {
    this.url = url;
    this.outbox = outbox; // [{id, body}] oldest first, persisted by the page via hooks.changed
    this.hooks = hooks;
    this.ws = null;
    this.ready = false; // welcome received on the current socket
    this.sending = false; // the page says the conversation accepts messages
    this.tries = 0; // failed attempts since the last welcome, drives the backoff
    this.flight = null; // client_id sent and not yet acknowledged
    this.backoff = 0; // ms before resending a message the server could not store
    this.stopped = false; // quick exit: never reconnect
    this.timers = {};
    addEventListener('online', () => this.restart());
    addEventListener('offline', () => hooks.state('down'));
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && !this.ws) this.now();
    });
  }

  connect() {
    this.clear('retry');
    if (this.ws || this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.later();
      return;
    }
    this.ws = ws;
    this.hooks.state('connecting');
    ws.onopen = () => ws.send(JSON.stringify(this.hooks.hello()));
    ws.onmessage = (e) => {
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      if (this.ws !== ws || !m || typeof m.type !== 'string') return;
      if (m.type === 'welcome') {
        this.ready = true;
        this.tries = 0;
        this.hooks.state('open');
      }
      this.hooks.frame(m);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.lost();
      this.later();
    };
  }

  lost() {
    this.ws = null;
    this.ready = false;
    this.flight = null;
    this.clear('ack');
    this.hooks.state('down');
  }

  later() {
    if (this.stopped) return;
    const delay = Math.random() * Math.min(MAX_DELAY, 500 * 2 ** this.tries++);
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  // Network back or page visible again: try at once instead of waiting out the backoff.
  now() {
    this.tries = 0;
    this.connect();
  }

  // Drop the current socket (it may be a zombie after a network change, or the page saw a
  // gap in seq) and open a fresh one that resumes from the last seq.
  restart() {
    const ws = this.ws;
    if (ws) {
      this.lost();
      ws.onclose = null;
      ws.close();
    }
    this.now();
  }

  // Close the socket and reconnect after the usual backoff.
  drop() {
    this.ws?.close();
  }

  stop() {
    this.stopped = true;
    this.clear('retry');
    const ws = this.ws;
    this.ws = null;
    ws?.close();
  }

  send(frame) {
    if (!this.ready) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  queue(body) {
    const id = newId();
    this.outbox.push({ id, body });
    this.hooks.changed();
    this.flush();
    return id;
  }

  flush() {
    if (!this.ready || !this.sending || this.flight || !this.outbox.length) return;
    const { id, body } = this.outbox[0];
    this.flight = id;
    this.send({ type: 'send', client_id: id, body });
    this.timers.ack = setTimeout(() => this.restart(), ACK_WAIT);
  }

  // The server committed client_id (ack, or our own msg echoed back).
  done(id) {
    const i = this.outbox.findIndex((m) => m.id === id);
    if (i >= 0) {
      this.outbox.splice(i, 1);
      this.hooks.changed();
    }
    if (this.flight === id) {
      this.flight = null;
      this.clear('ack');
      this.clear('again');
      this.backoff = 0;
    }
    this.flush();
  }

  // Not stored this time (unavailable, rate_limited): keep it and try again later.
  retry(id) {
    if (this.flight !== id) return;
    this.flight = null;
    this.clear('ack');
    this.backoff = Math.min(MAX_DELAY, (this.backoff || 1000) * 2);
    this.timers.again = setTimeout(
      () => this.flush(),
      this.backoff / 2 + (Math.random() * this.backoff) / 2,
    );
  }

  clear(name) {
    clearTimeout(this.timers[name]);
  }
}
