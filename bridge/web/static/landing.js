// The invite token stays in the URL fragment: browsers never send it to a server or a proxy
// log, and it reaches sealroom only in the JSON body of the two POSTs below.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let token = "";
  try {
    token = decodeURIComponent(window.location.hash.replace(/^#/, ""));
  } catch (err) {
    token = "";  // a mangled link: treated like any other unusable link
  }

  function show(id) {
    for (const section of ["loading", "gone", "unavailable", "invite", "done"]) {
      $(section).hidden = section !== id;
    }
    // Account creation (register.js) lives beside the invite form, and ends with its own steps.
    if ($("register")) { $("register").hidden = id !== "invite"; }
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    let data = {};
    try { data = await response.json(); } catch (err) { data = {}; }
    return { status: response.status, data };
  }

  // One wording for used, expired and unknown links alike (the server's 410 says the same).
  function gone() {
    show("gone");
  }

  function unavailable(message) {
    $("unavailable-message").textContent = message ||
      "Something went wrong on our side. Your link is still valid: please try again in a minute.";
    show("unavailable");
  }

  async function lookup() {
    if (!token) { gone(); return; }
    let result;
    try {
      result = await post("/i/lookup", { token });
    } catch (err) {
      unavailable("The server could not be reached. Check your connection and reload this page.");
      return;
    }
    if (result.status === 410 || result.status === 400) { gone(); return; }
    if (result.status !== 200) { unavailable(); return; }
    $("ticket-ref").textContent = result.data.ticket_ref;
    $("subject").textContent = result.data.subject;
    const expires = new Date(result.data.expires_at);
    $("expires").textContent = expires.toLocaleString();
    $("expires").dateTime = result.data.expires_at;
    show("invite");
    $("user-id").focus();
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
    $("user-id").setAttribute("aria-invalid", "true");
    $("user-id").focus();
  }

  async function redeem(event) {
    event.preventDefault();
    const userId = $("user-id").value.trim();
    if (!/^@[^:\s]+:\S+$/.test(userId)) {
      showError("This is not a valid Matrix ID. It looks like @name:example.org.");
      return;
    }
    $("error").hidden = true;
    $("user-id").removeAttribute("aria-invalid");
    $("redeem").disabled = true;
    let result;
    try {
      result = await post("/i/redeem", { token, user_id: userId });
    } catch (err) {
      $("redeem").disabled = false;
      showError("The server could not be reached. Check your connection and try again.");
      return;
    }
    $("redeem").disabled = false;
    if (result.status === 410) { gone(); return; }
    if (result.status !== 200) {
      showError(result.data.error || "Something went wrong. Please try again.");
      return;
    }
    showDone(result.data);
  }

  function showDone(data) {
    $("invited-as").textContent = data.user_id;
    $("matrix-to").href = data.matrix_to_url;
    if (data.web_client_url) {
      $("web-client").href = data.web_client_url;
      $("web-client-item").hidden = false;
    }
    show("done");
  }

  // For register.js (account creation), which shares the token and these steps.
  window.sealroomLanding = { token, post, show, showDone, gone, unavailable };

  $("redeem-form").addEventListener("submit", redeem);
  lookup();
})();
