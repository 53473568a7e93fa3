// DOM events for app/ffi/dom.py. The facts a handler gets, as JSON: the key and modifiers, the nearest
// [data-action] and [data-id] around the target (one delegated listener serves a whole list), the
// target's value, and whether a listener nearer the target already handled it (prevented). The
// handler returns true to prevent the default action.
export function listener(handler) {
  return (event) => {
    const t = event.target;
    const near = (sel) => (t && t.closest ? t.closest(sel) : null);
    const action = near("[data-action]");
    const owner = near("[data-id]");
    const facts = { type: event.type, key: event.key ?? null, shift: !!event.shiftKey, ctrl: !!event.ctrlKey,
      meta: !!event.metaKey, alt: !!event.altKey, composing: !!event.isComposing,
      action: action ? action.dataset.action : null, id: owner ? owner.dataset.id : null,
      value: t && typeof t.value === "string" ? t.value : null, prevented: event.defaultPrevented };
    if (handler(JSON.stringify(facts)) === true) event.preventDefault();
  };
}

// An in-page confirmation (the page's <dialog id="confirm-dialog">), instead of window.confirm():
// it works inside the widget's sandboxed iframe (where confirm() is blocked), follows the app's
// theme, and is reachable by keyboard (focus starts on Cancel; Escape cancels). Resolves true only
// for the confirming button. One question at a time: a new one cancels the one still open.
let pending = null;
export function ask(question, yes) {
  const dialog = document.getElementById("confirm-dialog");
  if (pending) pending(false);
  document.getElementById("confirm-text").textContent = question;
  document.getElementById("confirm-yes").textContent = yes;
  return new Promise((resolve) => {
    const done = (answer) => {
      if (pending !== finish) return;
      pending = null;
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const finish = done;
    const onClose = () => done(dialog.returnValue === "yes");
    pending = finish;
    dialog.returnValue = "";
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    document.getElementById("confirm-no").focus();
  });
}
