// What every floor and audit page does: sign out through the JSON API.
import { lang } from "./i18n.js";

const logout = document.getElementById("logout-btn");
logout?.addEventListener("click", async () => {
  logout.setAttribute("aria-busy", "true");
  try {
    await fetch("/api/logout", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: "{}",
    });
  } finally {
    location.assign(`/console/login?lang=${encodeURIComponent(lang)}`);
  }
});
