// Small enhancements of the casework pages; every page works without them.

// Filter a list of checkboxes (the categories) by what is typed.
for (const input of document.querySelectorAll("input[data-filter-checks]")) {
  const list = document.getElementById(input.dataset.filterChecks);
  if (!list) continue;
  input.addEventListener("input", () => {
    const words = input.value.toLocaleLowerCase().split(/\s+/).filter(Boolean);
    for (const label of list.querySelectorAll("label")) {
      const text = label.textContent.toLocaleLowerCase();
      label.hidden = !words.every((word) => text.includes(word));
    }
  });
}

// Filter the options of a select (the services to refer to) by what is typed.
for (const input of document.querySelectorAll("input[data-filter-select]")) {
  const select = document.getElementById(input.dataset.filterSelect);
  if (!select) continue;
  input.addEventListener("input", () => {
    const words = input.value.toLocaleLowerCase().split(/\s+/).filter(Boolean);
    for (const option of select.options) {
      const text = option.textContent.toLocaleLowerCase();
      option.hidden = !words.every((word) => text.includes(word));
    }
  });
}

// Read a chosen file into the import form's text area (the form posts text).
for (const input of document.querySelectorAll("input[type=file][data-fill]")) {
  const target = document.getElementById(input.dataset.fill);
  const format = document.getElementById("format");
  input.addEventListener("change", async () => {
    const file = input.files && input.files[0];
    if (!file || !target) return;
    target.value = await file.text();
    if (format) format.value = file.name.toLowerCase().endsWith(".csv") ? "csv" : "json";
  });
}
