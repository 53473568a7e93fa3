// DOM events for app/ffi/dom.py. The facts a handler gets, as JSON: the key and modifiers, the nearest
// [data-action] and [data-id] around the target (one delegated listener serves a whole list), and the
// target's value. The handler returns true to prevent the default action.
export function listener(handler) {
  return (event) => {
    const t = event.target;
    const near = (sel) => (t && t.closest ? t.closest(sel) : null);
    const action = near("[data-action]");
    const owner = near("[data-id]");
    const facts = { type: event.type, key: event.key ?? null, shift: !!event.shiftKey, ctrl: !!event.ctrlKey,
      meta: !!event.metaKey, alt: !!event.altKey, composing: !!event.isComposing,
      action: action ? action.dataset.action : null, id: owner ? owner.dataset.id : null,
      value: t && typeof t.value === "string" ? t.value : null };
    if (handler(JSON.stringify(facts)) === true) event.preventDefault();
  };
}
