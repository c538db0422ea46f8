// The login page: JSON login, clear errors, then on to the console in the same language.
import { byId } from "./dom.js";
import { lang, t } from "./i18n.js";

const form = byId("login-form");
const username = byId("username");
const password = byId("password");
const submit = byId("login-submit");
const error = byId("login-error");

function showError(text, field) {
  error.textContent = text;
  error.hidden = false;
  for (const input of [username, password]) input.setAttribute("aria-invalid", "false");
  if (field) {
    field.setAttribute("aria-invalid", "true");
    field.focus();
    field.select();
  }
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!username.value.trim()) return showError(t("login_missing_username"), username);
  if (!password.value) return showError(t("login_missing_password"), password);
  submit.disabled = true;
  submit.textContent = t("login_pending");
  error.hidden = true;
  try {
    const res = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ username: username.value.trim(), password: password.value }),
    });
    if (res.ok) {
      location.assign(`/console?lang=${encodeURIComponent(lang)}`);
      return;
    }
    if (res.status === 429) showError(t("login_rate_limited"), null);
    else if (res.status === 401) {
      password.value = "";
      showError(t("login_invalid"), password);
    } else showError(t("login_server_error"), null);
  } catch {
    showError(t("login_network_error"), null);
  }
  submit.disabled = false;
  submit.textContent = t("login_submit");
});
