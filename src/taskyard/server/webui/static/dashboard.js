// taskyard dashboard: live regions that refresh themselves, a log that follows, confirmations.
// No build step and no dependencies: served as is from the package.
"use strict";

function refreshLive(region) {
  const every = Number(region.dataset.poll || 0);
  if (!every) return;
  const url = new URL(window.location.href);
  url.searchParams.set("partial", "1");
  const tick = async () => {
    if (!document.hidden) {
      try {
        const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (answer.redirected || !answer.ok) return; // logged out, or gone: stop
        region.innerHTML = await answer.text();
      } catch (err) {
        /* the server is restarting: try again at the next tick */
      }
    }
    window.setTimeout(tick, every);
  };
  window.setTimeout(tick, every);
}

function followLog(pre) {
  let after = Number(pre.dataset.after || 0);
  let done = pre.dataset.done === "1";
  const atBottom = () => pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
  const step = async () => {
    try {
      const url = `${pre.dataset.follow}?after=${after}&wait=20`;
      const answer = await fetch(url, { credentials: "same-origin" });
      if (!answer.ok || answer.redirected) return;
      const page = await answer.json();
      if (page.text) {
        const follow = atBottom();
        pre.append(document.createTextNode(page.text));
        if (follow) pre.scrollTop = pre.scrollHeight;
      }
      after = page.last_seq;
      done = page.done;
      pre.dataset.after = String(after);
      pre.dataset.done = done ? "1" : "0";
    } catch (err) {
      await new Promise((resolve) => window.setTimeout(resolve, 2000));
    }
    if (!done) window.setTimeout(step, 50);
  };
  pre.scrollTop = pre.scrollHeight;
  if (!done) step();
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(refreshLive);
  document.querySelectorAll("pre[data-follow]").forEach(followLog);
});
