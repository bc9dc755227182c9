// Keyboard shortcuts for the judging page. Every action also works with the mouse or by touch.
(function () {
  const form = document.getElementById("judge-form");
  if (!form) return;
  const groups = Array.from(form.querySelectorAll("fieldset.criterion"));
  const submitButton = document.getElementById("submit");
  const cannotButton = document.getElementById("cannot-submit");
  const reason = document.getElementById("cannot_judge_reason");
  const values = { "1": "left", "2": "tie", "3": "right" };
  let current = 0;
  let submitting = false;

  function highlight(i) {
    current = Math.max(0, Math.min(groups.length - 1, i));
    groups.forEach((g, j) => {
      g.classList.toggle("current", j === current);
      if (j === current) g.setAttribute("aria-current", "step");
      else g.removeAttribute("aria-current");
    });
  }
  function firstUnanswered() {
    const i = groups.findIndex((g) => !g.querySelector("input:checked"));
    return i === -1 ? groups.length - 1 : i;
  }
  function next(i) {
    return i + 1 < groups.length ? i + 1 : firstUnanswered();
  }
  function submitWith(button) {
    if (submitting) return; // one Enter, one judgment
    form.requestSubmit(button);
  }
  // A click (or tap) on criterion i moves the outline on, as the 1/2/3 keys do.
  groups.forEach((g, i) => g.addEventListener("change", () => highlight(next(i))));
  highlight(0);

  // The newest turn matters most: start a long conversation scrolled to its end.
  const chat = document.querySelector(".chat");
  if (chat) chat.scrollTop = chat.scrollHeight;

  // Enter in the reason box submits "cannot judge", not an incomplete judgment.
  reason.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      submitWith(cannotButton);
    }
  });

  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
      (t.tagName === "INPUT" && t.type !== "radio");
    if (typing) {
      if (e.key === "Escape") t.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    // Links, buttons and the "cannot judge" toggle keep their own Enter/Space behaviour.
    const native = t.closest && t.closest("a, button, summary");
    if (values[e.key]) {
      groups[current].querySelector(`input[value="${values[e.key]}"]`).checked = true;
      highlight(next(current));
      e.preventDefault();
    } else if (e.key === "ArrowDown" || e.key === "j") {
      highlight(current + 1); e.preventDefault();
    } else if (e.key === "ArrowUp" || e.key === "k") {
      highlight(current - 1); e.preventDefault();
    } else if (e.key === "Enter" && !native) {
      e.preventDefault();
      if (form.reportValidity()) submitWith(submitButton);
    } else if (e.key === "c") {
      document.getElementById("comment").focus(); e.preventDefault();
    } else if (e.key === "x") {
      document.getElementById("cannot-box").open = true;
      reason.focus(); e.preventDefault();
    } else if (e.key === "g") {
      const link = document.getElementById("guidelines-link");
      if (link) window.open(link.href, "_blank", "noopener");
    }
  });

  // One click, one judgment: ignore further submits once the form goes.
  form.addEventListener("submit", () => {
    submitting = true;
    setTimeout(() => form.querySelectorAll("button").forEach((b) => (b.disabled = true)), 0);
  });
  // Coming back through the browser history shows a live form again.
  window.addEventListener("pageshow", (e) => {
    if (!e.persisted) return;
    submitting = false;
    form.querySelectorAll("button").forEach((b) => (b.disabled = false));
  });
})();
