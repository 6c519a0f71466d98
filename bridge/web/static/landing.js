// The invite token stays in the URL fragment: browsers never send it to a server or a proxy
// log, and it reaches sealroom only in the JSON body of the two POSTs below.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const main = $("main");
  const language = main.dataset.language || "en";
  // The page's messages in the reader's language, from the same catalogues as the page itself
  // (bridge/locale/*/LC_MESSAGES/sealroom.po, rendered into data-strings by the server).
  let strings = {};
  try { strings = JSON.parse(main.dataset.strings || "{}"); } catch (err) { strings = {}; }

  // gettext("English text with %(name)s", {name: value}): the catalogue's translation, filled.
  function gettext(message, values) {
    const translated = strings[message] || message;
    return translated.replace(/%\((\w+)\)s/g, (whole, name) =>
      (values && name in values) ? String(values[name]) : whole);
  }

  let token = "";
  try {
    token = decodeURIComponent(window.location.hash.replace(/^#/, ""));
  } catch (err) {
    token = "";  // a mangled link: treated like any other unusable link
  }

  // The language switcher keeps the invite token (the fragment) when it reloads the page.
  for (const link of document.querySelectorAll(".language-link")) {
    link.href = link.getAttribute("href") + window.location.hash;
  }

  const SECTIONS = ["loading", "gone", "unavailable", "invite", "existing", "done"];

  function show(id) {
    const invite = id === "invite";
    for (const section of SECTIONS) {
      $(section).hidden = !(section === id || (invite && section === "existing"));
    }
    // Account creation (register.js) sits between the invite and the existing-account form.
    if ($("register")) { $("register").hidden = !invite; }
  }

  // Move the reader to a new state and say it aloud (screen readers follow the focus; the
  // live region repeats the heading for those that do not).
  function announce(sectionId) {
    const heading = document.querySelector(`#${sectionId} h2`);
    if (!heading) { return; }
    heading.focus();
    $("announce").textContent = heading.textContent;
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

  // What the customer reads for an answer of sealroom's: the problem and the next step, in
  // their language. The server's own message (meant for the log) is never shown.
  function explain(result) {
    const code = result.data && result.data.errcode;
    switch (code) {
      case "SEALROOM_MATRIX_ID_INVALID":
        return gettext("This is not a Matrix address. It starts with @ and looks like @name:example.org: check it and try again.");
      case "SEALROOM_MATRIX_USER_UNKNOWN":
        return gettext("There is no account with this Matrix address. Check it for typos, or create an account. Your link still works.");
      case "SEALROOM_MATRIX_SERVER_UNREACHABLE": {
        const typed = $("user-id").value.trim();
        const server = typed.includes(":") ? typed.slice(typed.indexOf(":") + 1) : typed;
        return gettext("The server of your Matrix address (%(server)s) is not answering. Check the address for typos, or try again in a few minutes. Your link still works.", { server });
      }
      case "SEALROOM_HOMESERVER_UNAVAILABLE":
        return gettext("The chat server is not answering right now. Your link still works: please try again in a few minutes.");
      case "SEALROOM_TOO_MANY_ATTEMPTS":
        return gettext("Too many attempts with this link. Ask your support agent for a new link.");
      case "SEALROOM_REGISTRATION_DISABLED":
      case "SEALROOM_REGISTRATION_NOT_VERIFIED":
        return gettext("An account cannot be created here right now. If you already have a Matrix account, use it below, or ask your support agent.");
      default: {
        const reference = (result.data && result.data.request_id) || "";
        return gettext("Something went wrong on our side. Your link still works: please try again in a minute. If it keeps happening, tell your support agent this reference: %(reference)s", { reference });
      }
    }
  }

  // One wording for used, expired and unknown links alike (the server's 410 says the same).
  function gone() {
    show("gone");
    announce("gone");
  }

  function unavailable(message) {
    $("unavailable-message").textContent = message ||
      gettext("Something went wrong on our side. Your link is still valid: please try again in a minute.");
    show("unavailable");
    announce("unavailable");
  }

  function unreachable() {
    return gettext("The server could not be reached. Check your internet connection, then try again.");
  }

  // The reader's own clock: their browser knows their time zone, and the zone is named.
  function formatMoment(iso) {
    const moment = new Date(iso);
    try {
      return new Intl.DateTimeFormat(language, {
        year: "numeric", month: "long", day: "numeric", hour: "numeric", minute: "2-digit",
        timeZoneName: "short",
      }).format(moment);
    } catch (err) {
      return moment.toString();
    }
  }

  async function lookup() {
    if (!token) { gone(); return; }
    let result;
    try {
      result = await post("/i/lookup", { token });
    } catch (err) {
      unavailable(unreachable());
      return;
    }
    if (result.status === 410 || result.status === 400) { gone(); return; }
    if (result.status !== 200) { unavailable(); return; }
    $("ticket-ref").textContent = result.data.ticket_ref;
    $("subject").textContent = result.data.subject;
    $("expires").textContent = formatMoment(result.data.expires_at);
    $("expires").dateTime = result.data.expires_at;
    show("invite");
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
      showError(gettext("This is not a Matrix address. It starts with @ and looks like @name:example.org: check it and try again."));
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
      showError(unreachable());
      return;
    }
    $("redeem").disabled = false;
    if (result.status === 410) { gone(); return; }
    if (result.status !== 200) {
      showError(explain(result));
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
    announce("done");
  }

  // For register.js (account creation), which shares the token, the words and these steps.
  window.sealroomLanding = {
    token, post, show, showDone, gone, unavailable, announce, gettext, explain, unreachable,
  };

  $("redeem-form").addEventListener("submit", redeem);
  lookup();
})();
