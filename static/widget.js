// Embed the chat on any page with one tag:
//
//   <script src="https://you.github.io/app/static/widget.js" data-model="Qwen2.5-0.5B-Instruct-q4f32_1-MLC"
//           data-policy="prefer-local" data-theme="auto" data-position="bottom-right" data-open="false"></script>
//
// The chat runs in an iframe of the app (its origin, its storage, its models). The host page gets
// `window.WebGPUChat` (or the name in data-global):
//
//   WebGPUChat.send("Hello")         // a prompt, as if typed (queued until the chat is ready)
//   WebGPUChat.stop()                // stop the answer being written
//   WebGPUChat.open() / .close() / .toggle()
//   WebGPUChat.on("delta", (e) => ...)   // events: ready, start, delta, done, error, open, close
//   WebGPUChat.ready                 // a promise, resolved with the ready event
//
// The app runs only on sites its deployer allows (static/chat-config.json, embed.allowed_hosts); the
// iframe is sandboxed (no top navigation). Its conversations are kept apart, one space per site.
// Messages from the iframe are accepted only from the app's origin and the iframe's window; messages
// to it are posted only to the app's origin. The app in turn only listens to, and only answers, the
// origin of this page (app/ui/embed.py). Options: data-model (a model id), data-policy (priority,
// prefer-local, offline-only, cost, latency), data-theme (auto, light, dark), data-position
// (bottom-right, bottom-left, inline: inside data-target, a CSS selector), data-open (true/false).
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script) throw new Error("widget.js must be loaded with a classic <script src> tag");
  const opt = script.dataset;
  const appUrl = new URL("../", script.src);  // the app lives one folder above static/
  const appOrigin = appUrl.origin;
  const name = opt.global || "WebGPUChat";
  const position = opt.position || "bottom-right";
  if (!["bottom-right", "bottom-left", "inline"].includes(position)) {
    throw new Error(`widget.js: data-position must be bottom-right, bottom-left or inline, got ${position}`);
  }

  const src = new URL(appUrl);
  src.searchParams.set("embed", "1");
  src.searchParams.set("host", location.origin);
  for (const key of ["model", "policy", "theme"]) if (opt[key]) src.searchParams.set(key, opt[key]);

  const frame = document.createElement("iframe");
  frame.src = src.href;
  frame.title = opt.title || "Chat";
  frame.allow = "clipboard-write";
  // The chat may run scripts in its own origin (its storage, its models), open links in new tabs,
  // submit its own composer and ask before deleting; it may never navigate this page away.
  frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-popups " +
    "allow-popups-to-escape-sandbox allow-forms allow-modals");
  frame.style.cssText = "border:0;width:100%;height:100%;display:block;background:transparent";

  const box = document.createElement("div");
  box.setAttribute("data-webgpu-chat", "");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = opt.label || "Chat";
  button.setAttribute("aria-expanded", "false");
  const side = position === "bottom-left" ? "left" : "right";
  if (position === "inline") {
    box.style.cssText = "width:100%;height:100%;min-height:24rem";
  } else {
    box.style.cssText = `position:fixed;${side}:1rem;bottom:4rem;width:min(26rem,calc(100vw - 2rem));` +
      "height:min(36rem,calc(100vh - 6rem));box-shadow:0 4px 24px rgba(0,0,0,.25);border-radius:.6rem;" +
      "overflow:hidden;z-index:2147483000;background:Canvas";
    button.style.cssText = `position:fixed;${side}:1rem;bottom:1rem;z-index:2147483001;padding:.5rem 1rem;` +
      "border-radius:2rem;border:1px solid #8884;font:inherit;cursor:pointer";
  }
  box.appendChild(frame);

  const listeners = {};
  const emit = (type, detail) => {
    for (const fn of listeners[type] || []) {
      try { fn(detail); } catch (e) { console.error(e); }
    }
  };
  let isOpen = position === "inline" || opt.open === "true";
  const show = () => {
    box.hidden = !isOpen;
    button.setAttribute("aria-expanded", String(isOpen));
  };

  let readyResolve;
  const ready = new Promise((resolve) => { readyResolve = resolve; });
  let isReady = false;
  const queue = [];
  const post = (message) => {
    const tagged = { ...message, source: "webgpu-chat-host" };
    if (isReady) frame.contentWindow.postMessage(tagged, appOrigin);
    else queue.push(tagged);
  };

  window.addEventListener("message", (event) => {
    if (event.origin !== appOrigin || event.source !== frame.contentWindow) return;
    const d = event.data;
    if (!d || typeof d !== "object" || d.source !== "webgpu-chat" || typeof d.type !== "string") return;
    if (d.type === "ready" && !isReady) {
      isReady = true;
      for (const m of queue.splice(0)) frame.contentWindow.postMessage(m, appOrigin);
      readyResolve(d);
    }
    emit(d.type, d);
  });

  const api = {
    send(text) {
      if (typeof text !== "string" || !text.trim()) throw new TypeError("send(text) needs a non-empty string");
      post({ type: "send", text });
    },
    stop() { post({ type: "stop" }); },
    open() { if (!isOpen) { isOpen = true; show(); emit("open", { type: "open" }); } },
    close() { if (isOpen && position !== "inline") { isOpen = false; show(); emit("close", { type: "close" }); } },
    toggle() { if (isOpen) api.close(); else api.open(); },
    on(type, fn) { (listeners[type] ||= []).push(fn); return () => api.off(type, fn); },
    off(type, fn) { listeners[type] = (listeners[type] || []).filter((f) => f !== fn); },
    ready,
    frame,
  };
  button.addEventListener("click", () => api.toggle());

  const mount = () => {
    if (position === "inline") {
      const target = opt.target ? document.querySelector(opt.target) : script.parentElement;
      if (!target) throw new Error(`widget.js: no element matches data-target ${opt.target}`);
      target.appendChild(box);
    } else {
      document.body.appendChild(box);
      document.body.appendChild(button);
    }
    show();
  };
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount, { once: true });
  window[name] = api;
})();
