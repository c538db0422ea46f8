// The child's chat page: screens, transcript, composer, return codes, quick exit. The
// server is the source of truth: the page shows what welcome/state/msg say and keeps only
// the token, the outbox and a few flags in sessionStorage (store.js). A reload replays the
// whole transcript from the server, so no message text is kept on the device once sent.
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
const framed = window.top !== window; // inside the helpline site's panel (embed.js)

// sessionStorage: token, outbox [{id, body}], view, pre (start not yet confirmed), asked
// (the answers given), mode ('message' for a left message), danger, conv (the server has a
// conversation for us), talked, again (back in the queue after a counsellor), read (reading
// an ended chat), code (the return code), back (came back with it), bye (end not yet
// confirmed), fb (feedback frame), fbSent, peerRead.
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
let off = ''; // why nobody can answer soon: closed, nobody_online, busy; '' when someone can
let trying = ''; // a return code being checked: the next hello carries it
let codeAsked = false; // a return_code request is on its way
const mine = new Map(); // client_id -> <li> of our own messages
const timers = {};
const log = $('log');
const text = $('text');

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/child`;
const link = new Link(wsUrl, saved.outbox, { hello, frame, state: connState, changed: persist });

function hello() {
  const h = { type: 'hello', v: 1, lang };
  if (trying) h.return_code = trying;
  else if (saved.token) Object.assign(h, { token: saved.token, last_seq: lastSeq });
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
    case 'return_code':
      return gotCode(m.code);
    case 'error':
      return error(m);
  }
}

// --- conversation state -------------------------------------------------------------

function welcome(m) {
  const back = trying;
  if (back) {
    // A return code opened the conversation on this device: it is replayed from seq 1.
    trying = '';
    reset();
    Object.assign(saved, { code: tidy(back), back: true, conv: true });
    if (m.status === 'ended') saved.read = true; // they came back to read it
  } else if (saved.conv && (m.token !== saved.token || m.status === 'new')) {
    // The server no longer knows our conversation (purged, or a quick exit elsewhere).
    reset();
    note(t('err_not_found'));
  }
  saved.token = m.token;
  if (!booted) quietUpTo = m.last_seq;
  booted = true;
  persist();
  availability(m.availability);
  // Coming back to a waiting or ended conversation: the state or ended frame right after
  // the replay says which screen (a left message or a chat), so wait for it.
  state(m, Boolean(back) && m.status !== 'active');
  if (status === 'new' && saved.pre) link.send(startFrame());
  if (saved.bye && (status === 'queued' || status === 'active')) link.send({ type: 'end' });
  sendFeedback();
  seen();
}

function state(m, hold = false) {
  const before = status;
  const was = counsellor;
  const talkedBefore = Boolean(saved.talked);
  status = m.status;
  if (m.mode) saved.mode = m.mode;
  if (m.counsellor?.name) counsellor = m.counsellor.name;
  if (m.type === 'state') availability(m.availability);
  if (status !== 'new') {
    delete saved.pre;
    saved.conv = true;
  }
  if (status === 'queued' && (m.reason === 'transferred' || talkedBefore)) saved.again = true;
  if (status === 'active') {
    saved.talked = true;
    delete saved.again;
  }
  persist();
  link.sending = status === 'queued' || status === 'active';
  link.flush();
  if (status === 'queued') queue(m);
  // A counsellor arrives (first, after a transfer, or after a return to the queue).
  const arrived = before === 'queued' || (was && was !== counsellor);
  if (m.type === 'state' && status === 'active' && arrived) {
    const name = counsellor;
    if (talkedBefore) notice(name ? t('now_with', { name }) : t('now_with_anon'));
    else notice(name ? t('joined', { name }) : t('joined_anon'));
  }
  paint();
  if (!hold) go();
}

// Where the child should be, from the conversation's status and this tab's flags.
function screen() {
  if (saved.bye) return 'end';
  switch (status) {
    case 'new':
      if (saved.pre) return saved.mode === 'message' ? 'message' : 'waiting';
      return view === 'questions' || view === 'back' ? view : 'welcome';
    case 'queued':
      return saved.mode === 'message' ? 'message' : 'waiting';
    case 'active':
      return 'chat';
    case 'ended':
      return saved.read ? 'chat' : 'end';
  }
  return view;
}

// The code screen stays until the child says they have noted the code.
function go() {
  if (view !== 'code' || status === 'ended') show(screen());
}

// Everything on the screens that follows from the state, not from one event.
function paint() {
  const ended = status === 'ended';
  $('composer').hidden = ended;
  $('over').hidden = !ended;
  $('tools').hidden = status !== 'active';
  $('h-chat').textContent = counsellor ? t('chat_with', { name: counsellor }) : t('chat_with_anon');
  $('h-waiting').textContent = t(saved.again ? 'wait_again_title' : 'wait_title');
  $('w-again').hidden = !saved.again;
  for (const d of document.querySelectorAll('.danger')) d.hidden = !saved.danger;
  $('fb').hidden = !saved.talked || Boolean(saved.fb);
  const code = Boolean(saved.code);
  $('m-intro').hidden = code;
  $('m-after').hidden = !code;
  $('m-status').hidden = !code;
  $('m-status').textContent = code ? t(saved.back ? 'm_waiting' : 'm_saved') : '';
  // Becoming a left message is offered only before the child has written anything.
  $('to-message').hidden = !off || saved.mode === 'message' || log.childElementCount > 0;
}

// Can someone answer soon? The welcome says it for a child joining now; queued states say
// it for the child's own place in the queue.
function availability(a) {
  if (!a) return;
  off = a.open ? '' : a.reason || 'nobody_online';
  for (const e of document.querySelectorAll('.off-only')) e.hidden = !off;
  $('off').hidden = !off;
  $('soon').hidden = Boolean(off);
  if (off) {
    $('w-off-h').textContent = t(`w_${off}_h`);
    $('w-off-p').textContent = t(`w_${off}`);
    $('off-h').textContent = t(`off_${off}_h`);
    $('off-p').textContent = t(`off_${off}`);
  }
  // Closed: nobody will come, so waiting is not offered; otherwise it is, but second.
  const start = $('start');
  start.hidden = off === 'closed';
  start.className = off ? 'quiet' : 'primary';
  start.textContent = t(off ? 'start_anyway' : 'start');
  paint();
}

function queue(m) {
  const n = m.position;
  // With nobody to answer, "you are next" and a wait estimate would promise what we can't keep.
  const nobody = off === 'closed' || off === 'nobody_online';
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
  const news = status !== 'ended'; // not just the reminder after a resumed hello
  status = 'ended';
  link.sending = false;
  for (const { id } of saved.outbox) mark(mine.get(id), 'failed');
  saved.outbox.length = 0;
  delete saved.bye;
  const why = t(`ended_${reason}`);
  if (why) $('why').textContent = $('over-why').textContent = why;
  // Someone wrote to the child: let them read it before the end screen.
  if (news && reason !== 'child_ended' && reason !== 'quick_exit' && log.querySelector('.them'))
    saved.read = true;
  persist();
  typing(false);
  stopTyping();
  paint();
  go();
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
    return note(t(`err_${m.code}`) || t('err_other'));
  }
  if (trying && m.in_reply_to === 'hello') {
    // A wrong code says only that it is wrong; then connect again without it.
    trying = '';
    const key =
      m.code === 'rate_limited'
        ? 'back_many'
        : m.code === 'not_found' || m.code === 'bad_request'
          ? 'back_wrong'
          : 'err_other';
    $('back-err').textContent = t(key);
    $('back-go').disabled = false;
    $('back-code').focus();
    link.restart();
    return;
  }
  if (m.in_reply_to === 'return_code') {
    codeAsked = false;
  } else if ((m.code === 'not_found' || m.code === 'bad_request') && !link.ready) {
    reset(); // our token is unknown or malformed: start afresh
    link.restart();
  } else if (!link.ready) {
    link.drop(); // hello was refused (busy, briefly unavailable): try again after a backoff
  } else if (m.code === 'conflict') {
    return; // a repeated start: the state that follows says where we are
  } else if (m.in_reply_to === 'start' && saved.pre && status === 'new') {
    // Not in the queue yet (busy database, or too many new chats from this network):
    // try again by ourselves; the child keeps the waiting screen.
    const limited = m.code === 'rate_limited';
    clearTimeout(timers.start);
    timers.start = setTimeout(
      () => status === 'new' && link.send(startFrame()),
      limited ? 30000 : 5000,
    );
    if (limited) return note(t('err_start_limited'));
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
    committed();
  } else {
    const them = m.from === 'counsellor';
    li = bubble(them ? 'them' : 'sys', m.body, m.at);
    li.dataset.seq = m.seq;
    if (them) typing(false);
    if (m.seq > quietUpTo)
      say(them ? t('new_msg', { name: counsellor || t('them'), body: m.body }) : m.body);
    if (eyes) eyes.observe(li);
  }
  place(li, end || m.from === 'child');
  paint();
}

function ack(m) {
  link.done(m.client_id);
  const li = mine.get(m.client_id);
  if (!li) return;
  li.dataset.seq = m.seq;
  mark(li, m.seq <= peerRead ? 'read' : 'sent');
  place(li, atEnd());
  committed();
}

// A message of ours is stored: a left message now gets its return code.
function committed() {
  if (saved.mode === 'message' && !saved.code && status !== 'ended') askCode();
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

// A line from the page itself (not the server's transcript), placed after what is shown.
function notice(body) {
  const li = bubble('sys', body);
  li.classList.add('local');
  li.dataset.seq = lastSeq + 0.5;
  place(li, atEnd());
  say(body);
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
  if (!scroll || log.offsetParent === null) return;
  if (view === 'chat') scrollTo(0, document.documentElement.scrollHeight);
  else li.scrollIntoView({ block: 'nearest' });
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

// --- return codes -------------------------------------------------------------------

function askCode() {
  if (saved.code) return showCode();
  if (!codeAsked) codeAsked = link.send({ type: 'return_code' });
}

function gotCode(code) {
  codeAsked = false;
  saved.code = code;
  persist();
  paint();
  showCode();
}

function showCode() {
  $('code-sent').hidden = saved.mode !== 'message' || Boolean(saved.back);
  $('copied').textContent = '';
  show('code');
}

// Large and easy to copy by hand: lines break only between words, and the number stays
// with the last word.
function codeText(code) {
  const box = $('code');
  box.textContent = '';
  const parts = code.split('-');
  const tail = parts.splice(-2).join('-');
  for (const part of [...parts.map((w) => `${w}-`), tail]) {
    if (box.firstChild) box.append(document.createElement('wbr'));
    box.append(span('', part));
  }
}

// The code as the server reads it: any case, spaces or dots for dashes, ë for e.
const tidy = (code) =>
  code
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter(Boolean)
    .join('-');

async function copyCode() {
  let ok = false;
  try {
    await navigator.clipboard.writeText(saved.code);
    ok = true;
  } catch {
    // No clipboard API (or not allowed here): select the code and copy the old way.
    const range = document.createRange();
    range.selectNodeContents($('code'));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
  }
  $('copied').textContent = t(ok ? 'copied' : 'copy_failed');
}

// --- screens ------------------------------------------------------------------------

function show(name, focus = true) {
  if (!name || view === name) return;
  view = saved.view = name;
  persist();
  for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== `v-${name}`;
  // One transcript and composer, shown on every screen where the child can write.
  const slot = $(`v-${name}`).querySelector('.slot');
  $('talk').hidden = !slot;
  if (slot && $('talk').parentNode !== slot) slot.append($('talk'));
  if (name === 'code') codeText(saved.code || '');
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
  codeAsked = false;
  lastSeq = readSent = peerRead = 0;
  gapAt = -1;
  counsellor = '';
  mine.clear();
  inView.clear();
  log.textContent = '';
  for (const f of ['pre', 'fb', 'back-form']) $(f).reset();
  for (const id of ['fb-done', 'why', 'over-why', 'eta', 'back-err', 'code'])
    $(id).textContent = '';
  $('q-danger').hidden = true;
  $('back-go').disabled = false;
  $('pos').textContent = t('wait_joining');
  paint();
}

// --- the child's actions ------------------------------------------------------------

const startFrame = () => ({
  type: 'start',
  pre_chat: saved.pre,
  ...(saved.mode === 'message' && { mode: 'message' }),
});

function begin(pre) {
  saved.pre = saved.asked = pre;
  saved.danger = pre.in_danger === true;
  persist();
  paint();
  show(saved.mode === 'message' ? 'message' : 'waiting');
  if (status === 'new') link.send(startFrame());
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
  if (!body || [...body].length > MAX || status === 'ended') return;
  stopTyping();
  const at = new Date().toISOString();
  const id = link.queue(body);
  const li = bubble('me', body, at);
  mine.set(id, li);
  mark(li, 'sending');
  place(li, true);
  text.value = '';
  count();
  paint();
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
  $('confirm-yes').textContent = t(`${key}_yes`) || t('confirm_yes');
  $('confirm-no').textContent = t(`${key}_no`) || t('confirm_no');
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

// Forget this tab's conversation and go back to the welcome screen with a new socket.
function afresh() {
  reset();
  show('welcome');
  link.restart();
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
  if (framed) {
    // In the helpline site's panel: leave the whole site, not just the panel.
    try {
      parent.postMessage({ alo116: 'exit', url: exitUrl }, '*');
      top.location.replace(exitUrl);
      return;
    } catch {
      // not allowed to move the top page: embed.js does it on our message
    }
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

$('start').addEventListener('click', () => {
  delete saved.mode;
  show('questions');
});
$('leave').addEventListener('click', () => {
  saved.mode = 'message';
  persist();
  show('questions');
});
$('have-code').addEventListener('click', () => show('back'));
$('back-cancel').addEventListener('click', () => show('welcome'));
$('back-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const code = $('back-code').value.trim();
  if ([...tidy(code)].length < 4) {
    $('back-err').textContent = t(code ? 'back_wrong' : 'back_empty');
    return;
  }
  $('back-err').textContent = '';
  $('back-go').disabled = true;
  trying = code;
  link.restart();
});
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
$('to-message').addEventListener('click', () => {
  // Nothing written yet: leave the queue and leave a message instead, same answers.
  const pre = saved.asked || {};
  link.send({ type: 'end' });
  reset();
  Object.assign(saved, { mode: 'message', pre, asked: pre, danger: pre.in_danger === true });
  persist();
  paint();
  show('message');
  link.restart();
});
$('end').addEventListener('click', () => ask('confirm_end', bye));
$('get-code').addEventListener('click', askCode);
$('m-code').addEventListener('click', askCode);
$('m-done').addEventListener('click', () =>
  ask('confirm_done', () => {
    afresh();
    note(t('m_bye'));
  }),
);
$('code-ok').addEventListener('click', () => show(screen()));
$('copy').addEventListener('click', copyCode);
$('over-ok').addEventListener('click', () => {
  delete saved.read;
  persist();
  show('end');
});
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
$('again').addEventListener('click', afresh);

// --- start: put back what this tab already had, then connect -------------------------

for (const { id, body } of saved.outbox) {
  const li = bubble('me', body);
  mine.set(id, li);
  mark(li, 'sending');
  place(li);
}
if (saved.fb) $('fb-done').textContent = t('fb_thanks');
paint();
show((saved.token && saved.view) || 'welcome', false);
count();
link.connect();
