// The child's chat page: screens, transcript, composer, quick exit. The server is the
// source of truth: the page shows what welcome/state/msg say and keeps only the token,
// the outbox and a few flags in sessionStorage (store.js). A reload replays the whole
// transcript from the server, so no message text is kept on the device once sent.
import { Link } from './link.js';
import * as store from './store.js';

const MAX = 2000; // characters per message, as the server counts them (code points)
const $ = (id) => document.getElementById(id);
const S = JSON.parse($('strings').textContent);
const { lang, exit: exitUrl } = document.body.dataset;
const t = (key, vars = {}) => (S[key] ?? '').replace(/\{(\w+)\}/g, (_, k) => vars[k] ?? '');
const clock = new Intl.DateTimeFormat(lang, {
  hour: '2-digit',
  minute: '2-digit',
  hourCycle: 'h23',
});

// sessionStorage: token, outbox [{id, body}], view, pre (start not yet confirmed),
// danger, talked, bye (end not yet confirmed), fb (feedback frame), fbSent, peerRead.
const saved = store.load();
saved.outbox = Array.isArray(saved.outbox) ? saved.outbox : [];
let gone = false; // quick exit done: never write storage again
const persist = () => gone || store.save(saved);

let view; // the screen shown
let status = null; // the conversation's status as the server last said
let booted = false; // first welcome of this page load seen
let quietUpTo = 0; // a reload replays history: render it, but announce only what is new
let lastSeq = 0; // highest seq shown; every seq up to it is shown
let gapAt = -1; // lastSeq when we last resynced for a gap, so a hole never loops
let readSent = 0; // highest seq we told the server we have seen
let peerRead = saved.peerRead || 0; // the counsellor has read our messages up to here
let counsellor = ''; // the counsellor's name, when the server gives one
let everOpen = false;
let nobody = false; // no counsellor on duty, as the last state said
const mine = new Map(); // client_id -> <li> of our own messages
const timers = {};
const log = $('log');
const text = $('text');

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/child`;
const link = new Link(wsUrl, saved.outbox, { hello, frame, state: connState, changed: persist });

function hello() {
  const h = { type: 'hello', v: 1, lang };
  if (saved.token) Object.assign(h, { token: saved.token, last_seq: lastSeq });
  return h;
}

function frame(m) {
  switch (m.type) {
    case 'welcome':
      return welcome(m);
    case 'state':
      return state(m);
    case 'msg':
      return message(m);
    case 'ack':
      return ack(m);
    case 'typing':
      return typing(m.on);
    case 'read':
      return read(m.seq);
    case 'ended':
      return ended(m.reason);
    case 'error':
      return error(m);
  }
}

// --- conversation state -------------------------------------------------------------

function welcome(m) {
  // The server no longer knows our conversation (purged, or a new token): start afresh.
  if (
    (saved.token && m.token !== saved.token) ||
    (m.status === 'new' && (lastSeq || saved.talked))
  ) {
    reset();
    note(t('err_not_found'));
  }
  saved.token = m.token;
  if (!booted) quietUpTo = m.last_seq;
  booted = true;
  persist();
  state(m);
  if (status === 'new' && saved.pre) link.send({ type: 'start', pre_chat: saved.pre });
  if (saved.bye && (status === 'queued' || status === 'active')) link.send({ type: 'end' });
  sendFeedback();
  seen();
}

function state(m) {
  const before = status;
  status = m.status;
  if (m.counsellor?.name) counsellor = m.counsellor.name;
  if (typeof m.counsellors_online === 'number') {
    nobody = m.counsellors_online === 0;
    $('w-nobody').hidden = !nobody;
    $('off').hidden = !nobody;
    $('soon').hidden = nobody;
    // LEAVE-A-MESSAGE (server flow pending): when the server offers it, show #leave here.
  }
  if (status !== 'new') delete saved.pre;
  if (status === 'active') saved.talked = true;
  persist();
  link.sending = status === 'active';
  link.flush();
  if (status === 'queued') queue(m);
  $('h-chat').textContent = counsellor ? t('chat_with', { name: counsellor }) : t('chat_with_anon');
  $('fb').hidden = !saved.talked || Boolean(saved.fb);
  if (before === 'queued' && status === 'active') {
    say(counsellor ? t('joined', { name: counsellor }) : t('joined_anon'));
  }
  let to = { queued: 'waiting', active: 'chat', ended: 'end' }[status];
  if (status === 'new') to = saved.pre ? 'waiting' : view === 'questions' ? view : 'welcome';
  if (saved.bye) to = 'end';
  show(to);
}

function queue(m) {
  const n = m.position;
  // With nobody online, "you are next" and a wait estimate would promise what we can't keep.
  if (typeof n === 'number')
    $('pos').textContent = n <= 1 && !nobody ? t('wait_next') : t('wait_pos', { n });
  const s = m.estimated_wait_s;
  $('eta').textContent =
    typeof s !== 'number' || nobody
      ? ''
      : s < 60
        ? t('wait_eta0')
        : s < 90
          ? t('wait_eta1')
          : t('wait_eta', { m: Math.round(s / 60) });
}

function ended(reason) {
  status = 'ended';
  link.sending = false;
  for (const { id } of saved.outbox) mark(mine.get(id), 'failed');
  saved.outbox.length = 0;
  delete saved.bye;
  persist();
  const why = t(`ended_${reason}`);
  if (why) $('why').textContent = why;
  typing(false);
  stopTyping();
  show('end');
  sendFeedback();
}

function error(m) {
  const id = m.client_id;
  if (id && mine.has(id)) {
    if (m.code === 'unavailable' || m.code === 'rate_limited') {
      link.retry(id);
    } else {
      link.done(id); // refused for good: it would be refused again
      mark(mine.get(id), 'failed');
    }
  } else if ((m.code === 'not_found' || m.code === 'bad_request') && !link.ready) {
    reset(); // our token is unknown or malformed: start afresh
    link.restart();
  } else if (!link.ready) {
    link.drop(); // hello was refused (busy, briefly unavailable): try again after a backoff
  } else if (m.code === 'conflict') {
    return; // a repeated start: the state that follows says where we are
  } else if (m.code === 'unavailable' && saved.pre && status === 'new') {
    timers.start = setTimeout(
      () => status === 'new' && link.send({ type: 'start', pre_chat: saved.pre }),
      5000,
    );
  }
  note(t(`err_${m.code}`) || t('err_other'));
}

// --- transcript ---------------------------------------------------------------------

function message(m) {
  if (m.seq <= lastSeq) return; // already shown
  if (m.seq > lastSeq + 1 && gapAt !== lastSeq) {
    gapAt = lastSeq; // a frame went missing: resuming replays it from the database
    link.restart();
    return;
  }
  lastSeq = m.seq;
  const end = atEnd();
  let li;
  if (m.from === 'child') {
    if (m.client_id) link.done(m.client_id);
    li = mine.get(m.client_id) || bubble('me', m.body, m.at);
    if (m.client_id) mine.set(m.client_id, li);
    li.dataset.seq = m.seq;
    mark(li, m.seq <= peerRead ? 'read' : 'sent');
  } else {
    const them = m.from === 'counsellor';
    li = bubble(them ? 'them' : 'sys', m.body, m.at);
    li.dataset.seq = m.seq;
    if (them) typing(false);
    // A live word from a counsellor means the chat is active, whatever a late queue update said.
    if (them && m.seq > quietUpTo && status === 'queued') state({ status: 'active' });
    if (m.seq > quietUpTo)
      say(them ? t('new_msg', { name: counsellor || t('them'), body: m.body }) : m.body);
    if (eyes) eyes.observe(li);
  }
  place(li, end || m.from === 'child');
}

function ack(m) {
  link.done(m.client_id);
  const li = mine.get(m.client_id);
  if (!li) return;
  li.dataset.seq = m.seq;
  mark(li, m.seq <= peerRead ? 'read' : 'sent');
  place(li, atEnd());
}

function read(seq) {
  if (!(seq > peerRead)) return;
  peerRead = saved.peerRead = seq;
  persist();
  for (const li of mine.values()) if (+li.dataset.seq <= seq) mark(li, 'read');
}

function bubble(kind, body, at) {
  const li = document.createElement('li');
  li.className = `m ${kind}`;
  if (kind !== 'sys')
    li.append(span('sr', `${kind === 'me' ? t('you') : counsellor || t('them')}: `));
  const p = document.createElement('p');
  p.textContent = body;
  const meta = span('meta', at ? clock.format(new Date(at)) : '');
  li.append(p, meta);
  if (kind === 'me') meta.append(span('st', ''));
  return li;
}

function span(cls, txt) {
  const s = document.createElement('span');
  s.className = cls;
  s.textContent = txt;
  return s;
}

function mark(li, st) {
  if (!li) return;
  li.dataset.st = st;
  li.querySelector('.st').textContent = ` · ${t(`st_${st}`)}`;
}

// Keep the log in seq order; messages still waiting for a seq stay at the bottom.
function place(li, scroll) {
  const seq = li.dataset.seq ? +li.dataset.seq : Infinity;
  let next = null;
  for (let n = log.lastElementChild; n; n = n.previousElementSibling) {
    if (n === li) continue;
    if ((n.dataset.seq ? +n.dataset.seq : Infinity) <= seq) break;
    next = n;
  }
  if (li.nextElementSibling !== next || li.parentNode !== log) log.insertBefore(li, next);
  if (scroll && view === 'chat') scrollTo(0, document.documentElement.scrollHeight);
}

const atEnd = () => innerHeight + scrollY >= document.documentElement.scrollHeight - 120;

// --- typing and read receipts -------------------------------------------------------

function typing(on) {
  clearTimeout(timers.typing);
  $('typing').textContent = on
    ? counsellor
      ? t('typing', { name: counsellor })
      : t('typing_anon')
    : '';
  if (on) timers.typing = setTimeout(() => typing(false), 10000); // never stuck "typing"
}

let typingOn = false;
let typedAt = 0;
function typingOut() {
  if (status !== 'active') return;
  const now = Date.now();
  if (!typingOn || now - typedAt > 3000) {
    typedAt = now;
    typingOn = link.send({ type: 'typing', on: true });
  }
  clearTimeout(timers.idle);
  timers.idle = setTimeout(stopTyping, 4000);
}

function stopTyping() {
  clearTimeout(timers.idle);
  if (typingOn) link.send({ type: 'typing', on: false });
  typingOn = false;
}

const inView = new Set(); // seqs of their messages now on screen
const eyes =
  'IntersectionObserver' in window
    ? new IntersectionObserver((entries) => {
        for (const e of entries) inView[e.isIntersecting ? 'add' : 'delete'](+e.target.dataset.seq);
        seen();
      })
    : null;

function seen() {
  if (document.visibilityState !== 'visible' || view !== 'chat' || status !== 'active') return;
  const top = Math.max(0, ...(eyes ? inView : [lastSeq]));
  if (top > readSent && link.send({ type: 'read', seq: top })) readSent = top;
}
document.addEventListener('visibilitychange', seen);

// --- screens ------------------------------------------------------------------------

function show(name, focus = true) {
  if (view === name) return;
  view = saved.view = name;
  persist();
  for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== `v-${name}`;
  if (focus) $(`h-${name}`).focus({ preventScroll: name === 'chat' });
  if (name === 'chat') {
    scrollTo(0, document.documentElement.scrollHeight);
    seen();
  } else if (focus) {
    scrollTo(0, 0);
  }
}

function connState(s) {
  clearTimeout(timers.conn);
  if (s === 'open') {
    everOpen = true;
    $('conn').textContent = '';
    return;
  }
  // Say nothing about a quick reconnect; speak up if it lasts or the phone is offline.
  const offline = !navigator.onLine;
  timers.conn = setTimeout(
    () =>
      ($('conn').textContent = t(offline ? 'c_offline' : everOpen ? 'c_retry' : 'c_connecting')),
    offline ? 0 : 2500,
  );
}

function note(msg) {
  clearTimeout(timers.note);
  $('note').textContent = msg;
  timers.note = setTimeout(() => ($('note').textContent = ''), 10000);
}

// Screen readers hear new messages and changes through this polite live region.
function say(msg) {
  const live = $('live');
  live.append(span('', msg));
  while (live.childElementCount > 3) live.firstElementChild.remove();
}

// Forget this conversation (start again, or the server no longer knows our token).
function reset() {
  for (const k of Object.keys(saved)) if (k !== 'outbox') delete saved[k];
  saved.outbox.length = 0;
  persist();
  status = null;
  booted = false;
  lastSeq = readSent = peerRead = 0;
  gapAt = -1;
  counsellor = '';
  mine.clear();
  inView.clear();
  log.textContent = '';
  for (const f of ['pre', 'fb']) $(f).reset();
  $('fb').hidden = false;
  for (const id of ['fb-done', 'why', 'eta']) $(id).textContent = '';
  for (const id of ['w-danger', 'q-danger']) $(id).hidden = true;
  $('pos').textContent = t('wait_joining');
}

// --- the child's actions ------------------------------------------------------------

function begin(pre) {
  saved.pre = pre;
  saved.danger = pre.in_danger === true;
  persist();
  $('w-danger').hidden = !saved.danger;
  show('waiting');
  if (status === 'new') link.send({ type: 'start', pre_chat: pre });
}

function answers() {
  const f = new FormData($('pre'));
  const pre = {};
  for (const k of ['age_band', 'gender', 'topic']) if (f.get(k)) pre[k] = f.get(k);
  if (f.get('in_danger')) pre.in_danger = f.get('in_danger') === '1';
  return pre;
}

function send() {
  const body = text.value.trim();
  if (!body || [...body].length > MAX) return;
  stopTyping();
  const at = new Date().toISOString();
  const id = link.queue(body);
  const li = bubble('me', body, at);
  mine.set(id, li);
  mark(li, 'sending');
  place(li, true);
  text.value = '';
  count();
}

let wasOver = false;
function count() {
  const over = [...text.value].length - MAX;
  const c = $('count');
  c.textContent = over > 0 ? t('too_long', { n: over }) : `${MAX + over}/${MAX}`;
  c.classList.toggle('over', over > 0);
  $('send').disabled = over > 0;
  if (over > 0 && !wasOver) say(c.textContent);
  wasOver = over > 0;
}

function ask(key, then) {
  const d = $('confirm');
  if (typeof d.showModal !== 'function') {
    if (confirm(t(key))) then(); // browsers without <dialog>
    return;
  }
  $('confirm-q').textContent = t(key);
  d.returnValue = '';
  d.onclose = () => d.returnValue === 'yes' && then();
  d.showModal();
}

function bye() {
  saved.bye = true;
  persist();
  stopTyping();
  link.send({ type: 'end' });
  link.sending = false;
  $('why').textContent = t('ended_child_ended');
  show('end');
}

function sendFeedback() {
  if (status === 'ended' && saved.fb && !saved.fbSent && link.send(saved.fb)) {
    saved.fbSent = true;
    persist();
  }
}

function quickExit(e) {
  e?.preventDefault();
  const token = saved.token;
  gone = true;
  store.wipe();
  link.stop();
  document.body.textContent = ''; // hide the chat at once, even if the next page is slow
  try {
    if (token) navigator.sendBeacon('/api/child/quick-exit', token);
  } catch {
    // best effort: leaving matters more than telling
  }
  location.replace(exitUrl);
}

$('exit').addEventListener('click', quickExit);
let escapes = [];
addEventListener('keydown', (e) => {
  if (e.key !== 'Escape') return;
  escapes = escapes.filter((at) => e.timeStamp - at < 2000).concat(e.timeStamp);
  if (escapes.length >= 3) quickExit(e);
});
// Switching language replaces this history entry, so Back never leads into the chat.
$('lang').addEventListener('click', (e) => {
  e.preventDefault();
  location.replace(e.currentTarget.href);
});

$('start').addEventListener('click', () => show('questions'));
$('pre').addEventListener(
  'change',
  () => ($('q-danger').hidden = $('pre').elements.in_danger.value !== '1'),
);
$('pre').addEventListener('submit', (e) => {
  e.preventDefault();
  begin(answers());
});
$('skip').addEventListener('click', () => begin({}));
$('leave-queue').addEventListener('click', () => ask('confirm_leave', bye));
$('end').addEventListener('click', () => ask('confirm_end', bye));
$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});
text.addEventListener('input', () => {
  count();
  typingOut();
});
text.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});
$('fb').addEventListener('submit', (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const rating = Number(f.get('rating'));
  if (!rating) {
    note(t('fb_need'));
    return;
  }
  saved.fb = { type: 'feedback', rating };
  if (f.get('helped')) saved.fb.helped = f.get('helped') === '1';
  persist();
  sendFeedback();
  e.target.hidden = true;
  $('fb-done').textContent = t('fb_thanks');
});
$('again').addEventListener('click', () => {
  reset();
  show('welcome');
  link.restart();
});

// --- start: put back what this tab already had, then connect -------------------------

for (const { id, body } of saved.outbox) {
  const li = bubble('me', body);
  mine.set(id, li);
  mark(li, 'sending');
  place(li);
}
$('w-danger').hidden = !saved.danger;
if (saved.fb) {
  $('fb').hidden = true;
  $('fb-done').textContent = t('fb_thanks');
}
show((saved.token && saved.view) || 'welcome', false);
count();
link.connect();
