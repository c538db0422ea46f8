// "Chat with us" on the helpline's site: see the README, Embedding. Styles go through
// element.style (allowed under a strict host CSP). No cookies, no storage.
(() => {
  const me = document.currentScript;
  if (!me || window.alo116) return;
  window.alo116 = 1;
  const lang = /^en/i.test(me.dataset.lang || document.documentElement.lang) ? 'en' : 'sq';
  const chat = new URL(`/chat?lang=${lang}`, me.src);
  const [label, close, title] = {
    sq: ['Bisedo me ne', 'Mbyll dritaren e bisedës', 'Biseda me ALO 116 111'],
    en: ['Chat with us', 'Close the chat window', 'Chat with ALO 116 111'],
  }[lang];
  const pri = 'background:#0a6670;color:#fff;';
  const edge = 'position:fixed;right:16px;bottom:16px;z-index:2147483000;';
  const el = (tag, css, parent, props) => {
    const e = Object.assign(document.createElement(tag), props);
    e.style.cssText = 'font:700 16px system-ui,sans-serif;' + css;
    parent.append(e);
    return e;
  };
  let panel, frame, button, open;

  const show = (o) => {
    open = o;
    panel.style.display = open ? 'flex' : 'none';
    button.hidden = open;
    button.setAttribute('aria-expanded', open);
    (open ? frame : button).focus();
  };

  const build = (root) => {
    panel = el(
      'div',
      edge +
        'display:none;flex-direction:column;width:min(400px,100vw - 32px);' +
        'height:min(680px,100vh - 32px);background:#fff;border-radius:16px;' +
        'overflow:hidden;box-shadow:0 8px 32px #0005',
      root,
    );
    panel.setAttribute('role', 'dialog');
    panel.setAttribute('aria-label', title);
    const bar = el('div', pri + 'text-align:right;padding:4px', panel);
    el('button', pri + 'width:44px;height:44px;border:0;font-size:24px', bar, {
      textContent: '\u00d7',
      onclick: () => show(false),
    }).setAttribute('aria-label', close);
    frame = el('iframe', 'flex:1;border:0', panel, {
      title,
      allow: 'clipboard-write',
      referrerPolicy: 'no-referrer',
      src: chat,
    });
  };

  const start = () => {
    const host = el('div', 'all:initial', document.body);
    const root = host.attachShadow({ mode: 'open' });
    button = el(
      'a',
      edge + pri + 'padding:14px 22px;border-radius:99px;text-decoration:none',
      root,
      { href: chat, target: '_blank', rel: 'noopener noreferrer', textContent: label },
    );
    button.onclick = (e) => {
      if (matchMedia('(max-width:40em),(pointer:coarse)').matches) return; // new tab
      e.preventDefault();
      if (!panel) build(root);
      show(true);
    };
    addEventListener('keydown', (e) => e.key === 'Escape' && open && show(false));
    // Quick exit in the panel: leave this site for the neutral one.
    addEventListener('message', (e) => {
      if (!frame || e.source !== frame.contentWindow || e.origin !== chat.origin) return;
      if (e.data?.alo116 === 'exit' && /^https?:/.test(e.data.url)) {
        host.remove();
        location.replace(e.data.url);
      }
    });
  };

  document.body ? start() : addEventListener('DOMContentLoaded', start);
})();
