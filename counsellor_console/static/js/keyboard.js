// Console-wide shortcuts (listed on screen, in the left column):
// Alt+N take next, Alt+1..9 open chat n, Alt+Up/Down previous/next chat, Alt+M sound on/off,
// Alt+R the record, Alt+T transfer, Alt+E end, Alt+I information resources, Alt+O offers.
// Keys are matched by physical code, so they work on any keyboard layout.

export function installShortcuts(actions) {
  const { store, takeNext, openChat, toggleMute } = actions;
  const more = {
    KeyR: actions.focusRecord,
    KeyT: actions.transfer,
    KeyE: actions.end,
    KeyI: actions.resources,
    KeyO: actions.offers,
  };
  document.addEventListener("keydown", (e) => {
    if (!e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    if (document.querySelector("dialog[open]")) return;
    const chats = store.orderedChats();
    let handled = true;
    if (e.code === "KeyN") takeNext();
    else if (e.code === "KeyM") toggleMute();
    else if (/^Digit[1-9]$/.test(e.code)) {
      const chat = chats[Number(e.code.slice(5)) - 1];
      if (chat) openChat(chat.id);
    } else if (e.code === "ArrowUp" || e.code === "ArrowDown") {
      if (chats.length) {
        const at = chats.findIndex((c) => c.id === store.activeId);
        const step = e.code === "ArrowUp" ? -1 : 1;
        const next = at < 0 ? 0 : (at + step + chats.length) % chats.length;
        openChat(chats[next].id);
      }
    } else if (Object.hasOwn(more, e.code)) more[e.code]();
    else handled = false;
    if (handled) e.preventDefault();
  });
}
