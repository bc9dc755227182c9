// A <select data-autosubmit> submits its form when its value changes (the results filter).
// Kept out of the templates: the Content-Security-Policy allows no inline event handler.
document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.requestSubmit());
});
