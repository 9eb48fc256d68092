// rotor console: the little a page needs a browser for. Served from /console/assets (the
// Content-Security-Policy allows no inline script). Without it every page still works, except
// the live rotation progress and hiding a revealed value again.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // A revealed value disappears again after its time.
  for (const el of document.querySelectorAll("[data-hide-after]")) {
    const seconds = Number(el.dataset.hideAfter) || 30;
    setTimeout(() => {
      el.textContent = "hidden again";
      el.classList.add("hidden-again");
    }, seconds * 1000);
  }

  // Forms that change a lot ask first.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // Rotate now: the steps as the engine records them, then the outcome.
  const progress = document.getElementById("progress");
  if (progress) {
    const outcome = progress.querySelector(".outcome");
    const first = progress.querySelector("li[data-step]");
    if (first) first.className = "running";
    const events = new EventSource(progress.dataset.events);
    events.addEventListener("step", (e) => {
      const d = JSON.parse(e.data);
      const step = d.step === "promote" ? "finish" : d.step;
      const li = progress.querySelector(`li[data-step="${CSS.escape(step)}"]`);
      if (!li) return;
      const ok = d.outcome === "ok";
      li.className = ok ? "done" : "failed";
      li.dataset.outcome = d.outcome;
      if (d.detail) li.title = d.detail;
      if (!ok && d.detail) outcome.textContent = `${step}: ${d.outcome}: ${d.detail}`;
      const next = li.nextElementSibling;
      if (ok && next && next.className === "pending") next.className = "running";
    });
    events.addEventListener("outcome", (e) => {
      const d = JSON.parse(e.data);
      events.close();
      progress.dataset.state = d.result;
      outcome.textContent = d.message;
      if (d.result === "rotated") {
        for (const li of progress.querySelectorAll("li[data-step]")) li.className = "done";
      } else {
        for (const li of progress.querySelectorAll("li.running")) li.className = "failed";
      }
      progress.querySelector(".reload").hidden = false;
    });
  }
});
