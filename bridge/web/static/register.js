// "Create an account": registration and encryption set-up happen here, in the customer's
// browser, talking to the homeserver directly. The password and the recovery key never go to
// sealroom: sealroom only mints the single-use registration token and learns the new Matrix ID.
import {
  backupPublicKey,
  crossSigningKey,
  ed25519KeyPairFromSeed,
  encodeRecoveryKey,
  encryptSecret,
  generateRecoveryKey,
  keyDescription,
  secretFromPrivateKey,
  signJson,
} from "./onboarding-crypto.js";

const $ = (id) => document.getElementById(id);
const main = $("main");
const landing = window.sealroomLanding;
const gettext = landing.gettext;
const homeserver = main.dataset.homeserver.replace(/\/$/, "");
const serverName = main.dataset.serverName;
const minLength = Number(main.dataset.minLength || "12");
const LOCALPART = /^[a-z0-9._=\/+-]+$/;
const BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2";

// Everything secret lives in this object, in memory, until the page is left.
const state = { registrationToken: null, userId: null, accessToken: null, password: null,
  recoveryKey: null, finished: null };

function randomBytes(n) { return crypto.getRandomValues(new Uint8Array(n)); }

class HomeserverError extends Error {
  constructor(status, data) {
    super((data && data.error) || `The homeserver answered ${status}.`);  // for the console only
    this.status = status;
    this.errcode = data && data.errcode;
    this.data = data || {};
  }
}

// An answer of sealroom's that is not a success: its message is already in the reader's words.
class SealroomAnswer extends Error {
  constructor(result) {
    super(landing.explain(result));
  }
}

async function hs(method, path, body, accessToken) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) { headers["Content-Type"] = "application/json"; }
  if (accessToken) { headers["Authorization"] = `Bearer ${accessToken}`; }
  const response = await fetch(`${homeserver}/_matrix/client/v3${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
  });
  let data = {};
  try { data = await response.json(); } catch (err) { data = {}; }
  return { status: response.status, data };
}

function setError(message) {
  $("register-error").textContent = message;
  $("register-error").hidden = !message;
}

function progress(message) {
  $("register-progress").textContent = message;
  $("register-progress").hidden = !message;
}

function busy(on) {
  for (const id of ["create-account", "generate-password", "username", "password", "password-again"]) {
    $(id).disabled = on;
  }
}

// -- the user name, checked while typing ------------------------------------------------------

let checkTimer = null;
let lastChecked = "";

function localpartProblem(name) {
  if (!name) { return gettext("Choose a user name."); }
  if (name !== name.toLowerCase()) { return gettext("Use lowercase letters only."); }
  if (!LOCALPART.test(name)) {
    return gettext("Use only lowercase letters, digits and . _ = - / +");
  }
  if (`@${name}:${serverName}`.length > 255) { return gettext("This user name is too long."); }
  return null;
}

async function checkUsername() {
  const name = $("username").value.trim();
  lastChecked = name;
  const problem = localpartProblem(name);
  if (problem) { $("username-status").textContent = problem; return false; }
  try {
    const result = await hs("GET", `/register/available?username=${encodeURIComponent(name)}`);
    if (lastChecked !== name) { return false; }
    if (result.status === 200 && result.data.available) {
      $("username-status").textContent = gettext("%(address)s is available.", { address: `@${name}:${serverName}` });
      return true;
    }
    $("username-status").textContent = result.data.errcode === "M_USER_IN_USE"
      ? gettext("This user name is taken. Choose another one.")
      : gettext("This user name cannot be used. Choose another one.");
    return false;
  } catch (err) {
    $("username-status").textContent = gettext("The chat server could not be reached to check the name. Check your internet connection.");
    return false;
  }
}

$("username").addEventListener("input", () => {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(checkUsername, 300);
});

// -- the password ---------------------------------------------------------------------------

function passwordProblem(password, again) {
  if (password.length < minLength) { return gettext("Use at least %(count)s characters for the password.", { count: minLength }); }
  const kinds = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((re) => re.test(password));
  if (password.length < 20 && kinds.length < 3) {
    return gettext("Mix lowercase and uppercase letters, digits and symbols, or use a longer password.");
  }
  if (password !== again) { return gettext("The two passwords are not the same. Type the same password twice."); }
  return null;
}

$("generate-password").addEventListener("click", () => {
  const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789-_";
  const bytes = randomBytes(24);
  let password = "";
  for (const b of bytes) { password += alphabet[b % alphabet.length]; }
  $("password").value = password;
  $("password-again").value = password;
  $("generated-password-value").textContent = password;
  $("generated-password").hidden = false;
});

// -- registration: POST /register with the token stage, then m.login.dummy -------------------

async function register(localpart, password) {
  const body = { username: localpart, password, initial_device_display_name: "sealroom sign-up" };
  let result = await hs("POST", "/register", body);
  for (let step = 0; step < 4 && result.status === 401; step += 1) {
    const done = result.data.completed || [];
    const session = result.data.session;
    const auth = done.includes("m.login.registration_token")
      ? { type: "m.login.dummy", session }
      : { type: "m.login.registration_token", token: state.registrationToken, session };
    result = await hs("POST", "/register", { ...body, auth });
  }
  if (result.status !== 200) { throw new HomeserverError(result.status, result.data); }
  return result.data;
}

// -- encryption set-up: secret storage, cross-signing, key backup ----------------------------

async function putAccountData(type, content) {
  const userId = encodeURIComponent(state.userId);
  const result = await hs("PUT", `/user/${userId}/account_data/${encodeURIComponent(type)}`,
    content, state.accessToken);
  if (result.status !== 200) { throw new HomeserverError(result.status, result.data); }
}

async function uploadCrossSigning(keys) {
  let result = await hs("POST", "/keys/device_signing/upload", keys, state.accessToken);
  if (result.status === 401 && result.data.flows) {
    const auth = { type: "m.login.password", session: result.data.session,
      identifier: { type: "m.id.user", user: state.userId }, password: state.password };
    result = await hs("POST", "/keys/device_signing/upload", { ...keys, auth }, state.accessToken);
  }
  if (result.status !== 200) { throw new HomeserverError(result.status, result.data); }
}

async function setUpEncryption() {
  const userId = state.userId;
  const recovery = generateRecoveryKey();
  const keyId = Array.from(randomBytes(12), (b) => "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[b % 32]).join("");
  await putAccountData(`m.secret_storage.key.${keyId}`,
    await keyDescription(recovery, { name: "Recovery key" }));
  await putAccountData("m.secret_storage.default_key", { key: keyId });

  const seeds = { master: randomBytes(32), self_signing: randomBytes(32), user_signing: randomBytes(32) };
  const master = await ed25519KeyPairFromSeed(seeds.master);
  const ssk = await ed25519KeyPairFromSeed(seeds.self_signing);
  const usk = await ed25519KeyPairFromSeed(seeds.user_signing);
  await uploadCrossSigning({
    master_key: crossSigningKey(userId, "master", master.publicKey),
    self_signing_key: await signJson(crossSigningKey(userId, "self_signing", ssk.publicKey),
      userId, master.publicKey, seeds.master),
    user_signing_key: await signJson(crossSigningKey(userId, "user_signing", usk.publicKey),
      userId, master.publicKey, seeds.master),
  });
  for (const usage of ["master", "self_signing", "user_signing"]) {
    const name = `m.cross_signing.${usage}`;
    await putAccountData(name, { encrypted: {
      [keyId]: await encryptSecret(recovery, name, secretFromPrivateKey(seeds[usage])) } });
  }

  const backupPrivate = randomBytes(32);
  const authData = await signJson({ public_key: await backupPublicKey(backupPrivate) },
    userId, master.publicKey, seeds.master);
  const version = await hs("POST", "/room_keys/version",
    { algorithm: BACKUP_ALGORITHM, auth_data: authData }, state.accessToken);
  if (version.status !== 200) { throw new HomeserverError(version.status, version.data); }
  await putAccountData("m.megolm_backup.v1", { encrypted: {
    [keyId]: await encryptSecret(recovery, "m.megolm_backup.v1", secretFromPrivateKey(backupPrivate)) } });
  return encodeRecoveryKey(recovery);
}

// -- the whole path ----------------------------------------------------------------------------

function describe(err) {
  if (err instanceof HomeserverError) {
    if (err.errcode === "M_USER_IN_USE") { return gettext("This user name is taken. Choose another one."); }
    if (err.errcode === "M_INVALID_USERNAME") {
      return gettext("This user name cannot be used. Choose another one.");
    }
    if (err.errcode === "M_WEAK_PASSWORD") {
      return gettext("The chat server finds this password too weak. Choose a longer one.");
    }
    if (err.status === 401 || err.status === 403) {
      return gettext("The chat server refused to create the account. Your link may have expired: ask your support agent for a new one.");
    }
    return gettext("The chat server could not create the account right now. Please try again in a minute.");
  }
  if (err instanceof SealroomAnswer) { return err.message; }
  if (err instanceof TypeError) { return landing.unreachable(); }
  return gettext("Something went wrong in this browser. Reload the page and try again.");
}

async function finish() {
  progress(gettext("Telling your support agent's system about your new account…"));
  const result = await landing.post("/i/register/finish", { token: landing.token,
    user_id: state.userId, registration_token: state.registrationToken });
  if (result.status === 410) {
    // The account and its encryption exist: the key must still be shown to its owner.
    $("recovery-note").textContent = gettext("Your account is ready, but this invite link expired or was used meanwhile, so you were not invited yet. Save your recovery key, then ask your support agent for a new link and use \"I already have a Matrix account\".");
    $("recovery-note").hidden = false;
    state.finished = "gone";
    return;
  }
  if (result.status !== 200) { throw new SealroomAnswer(result); }
  state.finished = result.data;
}

function showRecoveryKey() {
  $("recovery-key").textContent = state.recoveryKey;
  for (const id of ["register", "invite", "existing", "recovery-check-step"]) { $(id).hidden = true; }
  $("recovery").hidden = false;
  landing.announce("recovery");
}

async function encryptionAndFinish() {
  // Each step runs once: a retry after a failure picks up where it stopped.
  if (!state.recoveryKey) {
    progress(gettext("Setting up encryption in your browser…"));
    state.recoveryKey = await setUpEncryption();
  }
  if (state.accessToken) {
    progress(gettext("Signing this browser out…"));
    await hs("POST", "/logout", {}, state.accessToken);
    state.accessToken = null;
  }
  await finish();
  if (!state.finished) { return; }
  progress("");
  showRecoveryKey();
}

async function createAccount(event) {
  event.preventDefault();
  setError("");
  const localpart = $("username").value.trim();
  const password = $("password").value;
  const problem = localpartProblem(localpart) || passwordProblem(password, $("password-again").value);
  if (problem) { setError(problem); return; }
  busy(true);
  try {
    if (!state.registrationToken) {
      progress(gettext("Preparing your account…"));
      const started = await landing.post("/i/register/start", { token: landing.token });
      if (started.status === 410) { landing.gone(); return; }
      if (started.status !== 200) { throw new SealroomAnswer(started); }
      state.registrationToken = started.data.registration_token;
    }
    progress(gettext("Creating your account…"));
    const account = await register(localpart, password);
    state.userId = account.user_id;
    state.accessToken = account.access_token;
    state.password = password;
    $("password").value = "";
    $("password-again").value = "";
    await encryptionAndFinish();
  } catch (err) {
    progress("");
    if (state.userId) {
      // The account exists; only the encryption set-up or the last step failed.
      const message = state.recoveryKey
        ? gettext("Your account %(account)s exists, but the last step failed: %(reason)s", { account: state.userId, reason: describe(err) })
        : gettext("Your account %(account)s exists, but setting up encryption failed: %(reason)s", { account: state.userId, reason: describe(err) });
      setError(message);
      $("retry-encryption").hidden = false;
    } else {
      if (err instanceof HomeserverError && (err.status === 401 || err.status === 403)) {
        state.registrationToken = null;  // refused: the next try gets a fresh token
      }
      setError(describe(err));
    }
  } finally {
    busy(false);
  }
}

$("register-form").addEventListener("submit", createAccount);

// Leaving halfway: revoke the unused registration token, or, if the account exists but its
// encryption is not set up, have the agent told. Nothing secret is in this message.
window.addEventListener("pagehide", () => {
  if (!state.registrationToken || state.finished) { return; }
  const body = { token: landing.token, registration_token: state.registrationToken };
  if (state.userId) { body.user_id = state.userId; }
  navigator.sendBeacon("/i/register/abandon",
    new Blob([JSON.stringify(body)], { type: "application/json" }));
});
$("retry-encryption").addEventListener("click", async () => {
  setError("");
  $("retry-encryption").hidden = true;
  try {
    await encryptionAndFinish();
  } catch (err) {
    progress("");
    setError(gettext("It failed again: %(reason)s If it keeps failing, tell your support agent.", { reason: describe(err) }));
    $("retry-encryption").hidden = false;
  }
});

// -- showing the recovery key once, then asking for a part of it back ------------------------

$("copy-key").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(state.recoveryKey);
    $("copy-status").textContent = gettext("Copied.");
  } catch (err) {
    $("copy-status").textContent = gettext("Copying is not allowed here: select the key and copy it.");
  }
});
$("download-key").addEventListener("click", () => {
  const title = gettext("Matrix recovery key for %(account)s", { account: state.userId });
  const text = title + "\n\n" + state.recoveryKey + "\n";
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = "matrix-recovery-key.txt";
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
});
$("print-key").addEventListener("click", () => window.print());
$("recovery-continue").addEventListener("click", () => {
  // The key leaves the screen: the customer types its start back from where they saved it.
  $("recovery-key").textContent = "";
  $("recovery").hidden = true;
  $("recovery-check").value = "";
  $("recovery-check-error").hidden = true;
  $("recovery-check").removeAttribute("aria-invalid");
  $("recovery-check-step").hidden = false;
  landing.announce("recovery-check-step");
});
$("recovery-back").addEventListener("click", showRecoveryKey);

const compact = (text) => text.replace(/\s+/g, "");

$("recovery-check-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const expected = compact(state.recoveryKey).slice(0, 8);
  if (compact($("recovery-check").value) !== expected) {
    $("recovery-check-error").textContent = gettext("These characters do not match the start of your recovery key. Look at the key where you saved it and type its first two groups, or choose \"Show my key again\".");
    $("recovery-check-error").hidden = false;
    $("recovery-check").setAttribute("aria-invalid", "true");
    $("recovery-check").focus();
    return;
  }
  // The key leaves the page for good: nothing of it is kept anywhere.
  state.recoveryKey = null;
  state.password = null;
  $("recovery-check").value = "";
  $("recovery-check-step").hidden = true;
  if (state.finished === "gone") { landing.gone(); return; }
  $("new-account-help").hidden = false;
  $("login-homeserver").textContent = homeserver;
  $("login-username").textContent = state.userId;
  landing.showDone(state.finished);
});
