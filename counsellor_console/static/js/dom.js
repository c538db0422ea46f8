// Tiny DOM helpers: every piece of text goes in through textContent, never as HTML.

/** Create an element. props: {class, text, attrs: {...}, on: {event: fn}, hidden}. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.text !== undefined && props.text !== null) el.textContent = String(props.text);
  if (props.hidden) el.hidden = true;
  for (const [name, value] of Object.entries(props.attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const [event, fn] of Object.entries(props.on || {})) el.addEventListener(event, fn);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
}

/**
 * Keep `container`'s children in the order of `items`, one node per key, reusing nodes so
 * that focus and scroll position survive an update (a rebuilt list would drop the focus).
 */
export function reconcile(container, items, keyOf, create, update) {
  const wanted = new Map(items.map((item) => [String(keyOf(item)), item]));
  const existing = new Map();
  for (const node of [...container.children]) {
    // Remove stale nodes first, so that the nodes which stay need not move.
    if (wanted.has(node.dataset.key)) existing.set(node.dataset.key, node);
    else node.remove();
  }
  let cursor = container.firstElementChild;
  let index = 0;
  for (const [key, item] of wanted) {
    let node = existing.get(key);
    if (!node) {
      node = create(item, index);
      node.dataset.key = key;
    }
    update(node, item, index);
    if (node !== cursor) container.insertBefore(node, cursor);
    else cursor = cursor.nextElementSibling;
    index += 1;
  }
}
