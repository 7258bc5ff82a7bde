// Progressive enhancement only: every page works without this file.
"use strict";

// Ask before destructive forms (data-confirm).
document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

// The registry name, checked as it is typed (checkNameAvailability through the portal).
function watchName(input) {
  const hint = document.getElementById("name-check");
  let timer = null;
  let asked = "";
  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    const name = input.value.trim();
    if (name.length < 5) {
      hint.textContent = "5 to 50 letters and digits; unique across the service.";
      hint.className = "hint";
      return;
    }
    timer = window.setTimeout(async () => {
      asked = name;
      try {
        const response = await fetch(`${input.dataset.checkUrl}?name=${encodeURIComponent(name)}`,
                                     {credentials: "same-origin", headers: {"Accept": "application/json"}});
        const body = await response.json();
        if (asked !== name) return;
        if (!response.ok) {
          hint.textContent = body.error ? body.error.message : "The name could not be checked.";
          hint.className = "hint bad";
        } else if (body.nameAvailable) {
          hint.textContent = `${name} is available.`;
          hint.className = "hint ok";
        } else {
          hint.textContent = body.message || `${name} is not available.`;
          hint.className = "hint bad";
        }
      } catch (error) {
        hint.textContent = "The name could not be checked.";
        hint.className = "hint";
      }
    }, 300);
  });
}

// A long-running operation's page: poll its status instead of reloading the whole page.
function followOperation(box) {
  const status = document.getElementById("operation-status");
  const progress = document.getElementById("operation-progress");
  const problem = document.getElementById("operation-error");
  const refresh = document.querySelector('meta[http-equiv="refresh"]');
  if (refresh) refresh.remove();
  const poll = async () => {
    try {
      const response = await fetch(box.dataset.statusUrl, {credentials: "same-origin"});
      const body = await response.json();
      const state = response.ok ? body.status : "Failed";
      box.dataset.status = state;
      if (state === "Succeeded") {
        status.textContent = "Done.";
        progress.max = 1;
        progress.value = 1;
        return;
      }
      if (state === "Failed" || state === "Canceled" || !response.ok) {
        const error = body.error || {};
        status.textContent = `${state}.`;
        problem.textContent = `${error.code || ""}: ${error.message || "The operation failed."}`;
        problem.classList.remove("hidden");
        progress.max = 1;
        progress.value = 0;
        return;
      }
      status.textContent = `In progress (${state})…`;
    } catch (error) {
      status.textContent = "Still waiting for the service…";
    }
    window.setTimeout(poll, 1000);
  };
  if (!["Succeeded", "Failed", "Canceled"].includes(box.dataset.status)) {
    window.setTimeout(poll, 500);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const name = document.getElementById("registry-name");
  if (name && name.dataset.checkUrl) watchName(name);
  const operation = document.getElementById("operation");
  if (operation) followOperation(operation);
});
