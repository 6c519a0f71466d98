// Browser-side Matrix identity primitives for sealroom's onboarding page.
//
// The browser twin of bridge/matrix/identity.py: recovery keys, secret storage
// (m.secret_storage.v1.aes-hmac-sha2), canonical-JSON Ed25519 signatures and cross-signing key
// objects, and key backup (m.megolm_backup.v1.curve25519-aes-sha2). Both are tested against the
// same known-answer vectors (matrix-js-sdk, matrix-sdk-crypto) and against each other, so a
// customer's browser and the bot agree byte for byte.
//
// No dependencies, no eval, no network: only WebCrypto (crypto.subtle with Ed25519 and X25519)
// and small hand-written helpers, so it loads under `script-src 'self'`. Every function that
// touches crypto.subtle is async. Errors never carry key material.
//
// Encodings follow the reference implementations: secret storage writes *padded* base64
// (matrix-js-sdk's encodeBase64); signatures, public keys and key backup use *unpadded* base64 as
// the spec prescribes. Decoding accepts either form.

export const SECRET_STORAGE_ALGORITHM = "m.secret_storage.v1.aes-hmac-sha2";
export const BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2";
export const CROSS_SIGNING_USAGES = Object.freeze(["master", "self_signing", "user_signing"]);

const RECOVERY_KEY_PREFIX = [0x8b, 0x01];
const KEY_LENGTH = 32;
const RECOVERY_KEY_BYTES = RECOVERY_KEY_PREFIX.length + KEY_LENGTH + 1;
const BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const ZERO_SALT = new Uint8Array(32);
const IV_LENGTH = 16;
const BACKUP_MAC_LENGTH = 8;
// What Python's str.split() treats as whitespace (str.isspace), which differs from JavaScript's
// \s: Python also splits on U+001C..U+001F and U+0085, and does not split on U+FEFF.
const WHITESPACE =
  /[\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/gu;
// DER prefixes of a PKCS#8 PrivateKeyInfo holding a 32-byte RFC 8410 private key (the seed):
// SEQUENCE { INTEGER 0, SEQUENCE { OID }, OCTET STRING { OCTET STRING (32 bytes) } }.
const PKCS8_ED25519_PREFIX = [
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const PKCS8_X25519_PREFIX = [
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];

const encoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF, as Python's bytes.decode("utf-8") does.
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const subtle = globalThis.crypto.subtle;

// --- errors -------------------------------------------------------------------------------

/** Base class for every failure in this module; the message is safe to show a person. */
export class IdentityError extends Error {
  constructor(message) {
    super(message);
    this.name = "IdentityError";
  }
}

/** Not a well-formed recovery key; `reason` is empty|character|parity|prefix|length. */
export class RecoveryKeyInvalid extends IdentityError {
  constructor(reason, message) {
    super(message);
    this.name = "RecoveryKeyInvalid";
    this.reason = reason;
  }
}

/** A secret (or a key check) did not authenticate: wrong key, wrong name or tampered data. */
export class SecretStorageMacMismatch extends IdentityError {
  constructor(message) {
    super(message);
    this.name = "SecretStorageMacMismatch";
  }
}

/** A JSON object is not signed by the expected key. */
export class SignatureInvalid extends IdentityError {
  constructor(message) {
    super(message);
    this.name = "SignatureInvalid";
  }
}

/** A key-backup session was not encrypted to this backup key. */
export class BackupMacMismatch extends IdentityError {
  constructor(message) {
    super(message);
    this.name = "BackupMacMismatch";
  }
}

// --- byte and encoding helpers ------------------------------------------------------------

function toBytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw new IdentityError(`${what} must be bytes (a Uint8Array)`);
}

function requireLength(data, length, what) {
  if (data.length !== length) {
    throw new IdentityError(`${what} must be ${length} bytes, got ${data.length}`);
  }
}

function concat(...parts) {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Compare two byte arrays without an early exit (the length is not secret). */
function constantTimeEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function pyRepr(text) {
  // Python's repr() of a plain string, as identity.py's messages show secret names.
  return `'${String(text).replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function base64Encode(data) {
  let out = "";
  let i = 0;
  for (; i + 2 < data.length; i += 3) {
    const n = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    out +=
      BASE64_ALPHABET[(n >> 18) & 63] +
      BASE64_ALPHABET[(n >> 12) & 63] +
      BASE64_ALPHABET[(n >> 6) & 63] +
      BASE64_ALPHABET[n & 63];
  }
  const rest = data.length - i;
  if (rest === 1) {
    const n = data[i] << 16;
    out += BASE64_ALPHABET[(n >> 18) & 63] + BASE64_ALPHABET[(n >> 12) & 63] + "==";
  } else if (rest === 2) {
    const n = (data[i] << 16) | (data[i + 1] << 8);
    out +=
      BASE64_ALPHABET[(n >> 18) & 63] +
      BASE64_ALPHABET[(n >> 12) & 63] +
      BASE64_ALPHABET[(n >> 6) & 63] +
      "=";
  }
  return out;
}

/** Standard base64 with padding (what matrix-js-sdk writes for secret storage). */
export function base64Padded(data) {
  return base64Encode(toBytes(data, "the data"));
}

/** Standard base64 without padding (the Matrix spec's "unpadded base64"). */
export function base64Unpadded(data) {
  return base64Encode(toBytes(data, "the data")).replace(/=+$/, "");
}

/** Decode standard base64 with or without padding; Matrix uses both. */
export function base64Decode(value, what = "the value") {
  if (typeof value !== "string") throw new IdentityError(`${what} must be a base64 string`);
  const text = value.replace(/=+$/, "");
  if (text.length % 4 === 1) throw new IdentityError(`${what} is not valid base64`);
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let bits = 0;
  let buffer = 0;
  let index = 0;
  for (let i = 0; i < text.length; i++) {
    const digit = BASE64_ALPHABET.indexOf(text[i]);
    if (digit < 0) throw new IdentityError(`${what} is not valid base64`);
    buffer = ((buffer << 6) | digit) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[index++] = (buffer >> bits) & 0xff;
    }
  }
  return out;
}

function base58Encode(data) {
  let zeros = 0;
  while (zeros < data.length && data[zeros] === 0) zeros++;
  const digits = []; // little-endian base-58 digits
  for (let i = zeros; i < data.length; i++) {
    let carry = data[i];
    for (let j = 0; j < digits.length; j++) {
      carry += digits[j] * 256;
      digits[j] = carry % 58;
      carry = Math.floor(carry / 58);
    }
    while (carry > 0) {
      digits.push(carry % 58);
      carry = Math.floor(carry / 58);
    }
  }
  let out = "1".repeat(zeros);
  for (let i = digits.length - 1; i >= 0; i--) out += BASE58_ALPHABET[digits[i]];
  return out;
}

function base58Decode(text) {
  // Callers have already checked the alphabet.
  let zeros = 0;
  while (zeros < text.length && text[zeros] === "1") zeros++;
  const bytes = []; // little-endian base-256 digits
  for (let i = zeros; i < text.length; i++) {
    let carry = BASE58_ALPHABET.indexOf(text[i]);
    for (let j = 0; j < bytes.length; j++) {
      carry += bytes[j] * 58;
      bytes[j] = carry & 0xff;
      carry >>= 8;
    }
    while (carry > 0) {
      bytes.push(carry & 0xff);
      carry >>= 8;
    }
  }
  const out = new Uint8Array(zeros + bytes.length);
  for (let i = 0; i < bytes.length; i++) out[zeros + i] = bytes[bytes.length - 1 - i];
  return out;
}

// --- recovery keys ------------------------------------------------------------------------

/** A fresh 32-byte secret storage key (what a recovery key encodes). */
export function generateRecoveryKey() {
  return globalThis.crypto.getRandomValues(new Uint8Array(KEY_LENGTH));
}

/** Encode a 32-byte key as a recovery key: base58 in space-separated groups of four. */
export function encodeRecoveryKey(key) {
  const bytes = toBytes(key, "a recovery key's secret");
  requireLength(bytes, KEY_LENGTH, "a recovery key's secret");
  const data = concat(Uint8Array.from(RECOVERY_KEY_PREFIX), bytes, new Uint8Array(1));
  let parity = 0;
  for (let i = 0; i < data.length - 1; i++) parity ^= data[i];
  data[data.length - 1] = parity;
  const text = base58Encode(data);
  data.fill(0);
  return text.match(/.{1,4}/g).join(" ");
}

/**
 * Decode a recovery key typed or pasted by a person; all whitespace is ignored.
 *
 * Checks run in matrix-js-sdk's order (alphabet, parity, prefix, length), exactly as
 * identity.decode_recovery_key does, so a bad key gets the same `reason` in both.
 */
export function decodeRecoveryKey(text) {
  if (typeof text !== "string") {
    throw new RecoveryKeyInvalid("empty", "No recovery key was entered.");
  }
  const compact = text.replace(WHITESPACE, "");
  const chars = Array.from(compact); // code points, as Python counts them
  if (chars.length === 0) throw new RecoveryKeyInvalid("empty", "No recovery key was entered.");
  if (chars.length > 2 * RECOVERY_KEY_BYTES) {
    throw new RecoveryKeyInvalid(
      "length",
      "The recovery key has the wrong length: it is far too long. Paste only the " +
        "recovery key itself.",
    );
  }
  for (let i = 0; i < chars.length; i++) {
    if (chars[i].length !== 1 || !BASE58_ALPHABET.includes(chars[i])) {
      throw new RecoveryKeyInvalid(
        "character",
        `The recovery key contains a character that never appears in recovery keys ` +
          `(at position ${i + 1}, not counting spaces; recovery keys have no 0, O, I, ` +
          `l or punctuation). Check it against your saved copy.`,
      );
    }
  }
  const data = base58Decode(compact);
  let parity = 0;
  for (const byte of data) parity ^= byte;
  if (parity !== 0) {
    throw new RecoveryKeyInvalid(
      "parity",
      "The recovery key's checksum does not match, so a character was probably mistyped. " +
        "Check it against your saved copy.",
    );
  }
  if (data[0] !== RECOVERY_KEY_PREFIX[0] || data[1] !== RECOVERY_KEY_PREFIX[1]) {
    throw new RecoveryKeyInvalid(
      "prefix",
      "This is not a Matrix recovery key (it does not start like one). Make sure you " +
        "entered the recovery key, not a passphrase or another code.",
    );
  }
  if (data.length !== RECOVERY_KEY_BYTES) {
    throw new RecoveryKeyInvalid(
      "length",
      "The recovery key has the wrong length: characters are missing or extra. " +
        "Check it against your saved copy.",
    );
  }
  const key = data.slice(RECOVERY_KEY_PREFIX.length, -1);
  data.fill(0);
  return key;
}

// --- canonical JSON -----------------------------------------------------------------------

function compareCodePoints(a, b) {
  // Python sorts str by code point; JavaScript's default sort uses UTF-16 code units, which
  // differs for characters above U+FFFF against U+E000..U+FFFF.
  const x = Array.from(a);
  const y = Array.from(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

function canonical(value, path) {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      return JSON.stringify(value);
    case "number":
      if (!Number.isSafeInteger(value)) {
        throw new IdentityError(
          `Canonical JSON allows only integers in ±(2^53-1), not ${value} (at ${path})`,
        );
      }
      return Object.is(value, -0) ? "0" : String(value);
    case "object": {
      if (Array.isArray(value)) {
        return `[${value.map((item, i) => canonical(item, `${path}[${i}]`)).join(",")}]`;
      }
      const keys = Object.keys(value).sort(compareCodePoints);
      const parts = [];
      for (const key of keys) {
        if (value[key] === undefined) continue;
        parts.push(`${JSON.stringify(key)}:${canonical(value[key], `${path}.${key}`)}`);
      }
      return `{${parts.join(",")}}`;
    }
    default:
      throw new IdentityError(`Canonical JSON cannot encode a ${typeof value} (at ${path})`);
  }
}

/**
 * Matrix canonical JSON: sorted keys (by code point), no whitespace, integers only.
 * Returns a string; its UTF-8 encoding is what gets signed.
 */
export function canonicalJson(obj) {
  return canonical(obj, "$");
}

// --- secret storage (m.secret_storage.v1.aes-hmac-sha2) -----------------------------------

async function hkdf(key, info, length) {
  const base = await subtle.importKey("raw", key, "HKDF", false, ["deriveBits"]);
  const bits = await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: ZERO_SALT, info },
    base,
    length * 8,
  );
  return new Uint8Array(bits);
}

/**
 * Derive the AES-256 and HMAC-SHA256 keys that protect the secret called `name`:
 * HKDF-SHA256(key, salt = 32 zero bytes, info = name) -> {aesKey, macKey}, 32 bytes each.
 */
export async function deriveSecretKeys(key, name) {
  const derived = await hkdf(toBytes(key, "the secret storage key"), encoder.encode(name), 64);
  return { aesKey: derived.slice(0, 32), macKey: derived.slice(32) };
}

async function secretCryptoKeys(key, name) {
  const { aesKey, macKey } = await deriveSecretKeys(key, name);
  const keys = {
    aes: await subtle.importKey("raw", aesKey, "AES-CTR", false, ["encrypt", "decrypt"]),
    mac: await subtle.importKey("raw", macKey, { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
      "verify",
    ]),
  };
  aesKey.fill(0);
  macKey.fill(0);
  return keys;
}

// The whole 16-byte IV is the counter block and it increments as one 128-bit big-endian number,
// like Python's `cryptography` CTR mode and matrix-sdk-crypto's Ctr128BE. (matrix-js-sdk asks
// WebCrypto for a 64-bit counter; the two differ only if the low half wraps, which a random IV
// with bit 63 cleared never does within a secret.)
async function aesCtr(aesKey, iv, data) {
  return new Uint8Array(
    await subtle.encrypt({ name: "AES-CTR", counter: iv, length: 128 }, aesKey, data),
  );
}

function randomCtrIv() {
  const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_LENGTH));
  iv[8] &= 0x7f; // clear bit 63 so the low 64-bit half can never wrap
  return iv;
}

async function encryptBytes(key, name, plaintext, iv) {
  const ivBytes = iv == null ? randomCtrIv() : toBytes(iv, "the IV");
  requireLength(ivBytes, IV_LENGTH, "the IV");
  const keys = await secretCryptoKeys(key, name);
  const ciphertext = await aesCtr(keys.aes, ivBytes, plaintext);
  const mac = new Uint8Array(await subtle.sign("HMAC", keys.mac, ciphertext));
  return {
    iv: base64Padded(ivBytes),
    ciphertext: base64Padded(ciphertext),
    mac: base64Padded(mac),
  };
}

/**
 * Encrypt a secret for account data `name`: resolves to {iv, ciphertext, mac} in padded base64.
 * Pass `iv` (16 bytes) only to reproduce a known answer; otherwise a random one is used.
 */
export async function encryptSecret(key, name, plaintext, iv = undefined) {
  if (typeof plaintext !== "string") throw new IdentityError("The secret must be a string");
  return encryptBytes(key, name, encoder.encode(plaintext), iv);
}

/**
 * Authenticate then decrypt a secret stored under `name`. The MAC is checked (WebCrypto's
 * HMAC verify, constant time) before anything is decrypted.
 */
export async function decryptSecret(key, name, encrypted) {
  const source = encrypted ?? {};
  const iv = base64Decode(source.iv, "the secret's iv");
  const ciphertext = base64Decode(source.ciphertext, "the secret's ciphertext");
  const mac = base64Decode(source.mac, "the secret's mac");
  requireLength(iv, IV_LENGTH, "the secret's iv");
  const keys = await secretCryptoKeys(key, name);
  if (!(await subtle.verify("HMAC", keys.mac, mac, ciphertext))) {
    throw new SecretStorageMacMismatch(
      `Could not decrypt secret ${pyRepr(name)}: the key is wrong for it or the stored data ` +
        `was altered. Check that the right recovery key was entered.`,
    );
  }
  const plaintext = await aesCtr(keys.aes, iv, ciphertext);
  try {
    return strictDecoder.decode(plaintext);
  } catch {
    throw new IdentityError(`Secret ${pyRepr(name)} decrypted to something that is not text`);
  } finally {
    plaintext.fill(0);
  }
}

/**
 * Build the content of `m.secret_storage.key.<key id>` for `key`: {algorithm, iv, mac[, name]},
 * where iv/mac come from encrypting 32 zero bytes under the empty name.
 */
export async function keyDescription(key, { name = undefined, iv = undefined } = {}) {
  const check = await encryptBytes(key, "", new Uint8Array(32), iv);
  const content = { algorithm: SECRET_STORAGE_ALGORITHM, iv: check.iv, mac: check.mac };
  if (name != null) content.name = name;
  return content;
}

/**
 * Tell whether `key` is the key a `m.secret_storage.key.*` description was made for.
 * Resolves false for a wrong key; throws IdentityError if the description cannot be checked.
 */
export async function checkKey(key, description) {
  const source = description ?? {};
  if (source.algorithm !== SECRET_STORAGE_ALGORITHM) {
    throw new IdentityError(
      `The secret storage key uses an unsupported algorithm; only ` +
        `${SECRET_STORAGE_ALGORITHM} is supported.`,
    );
  }
  if (!("iv" in source) || !("mac" in source)) {
    throw new IdentityError(
      "The secret storage key description has no iv/mac, so a key cannot be checked " +
        "against it; set up secret storage again.",
    );
  }
  const iv = base64Decode(source.iv, "the key description's iv");
  const mac = base64Decode(source.mac, "the key description's mac");
  requireLength(iv, IV_LENGTH, "the key description's iv");
  const keys = await secretCryptoKeys(key, "");
  const ciphertext = await aesCtr(keys.aes, iv, new Uint8Array(32));
  return subtle.verify("HMAC", keys.mac, mac, ciphertext);
}

/** Encode a private key as a secret-storage value (padded base64, as Element stores it). */
export function secretFromPrivateKey(privateKey) {
  return base64Padded(toBytes(privateKey, "the private key"));
}

/** Decode a 32-byte private key stored as a secret-storage value. */
export function privateKeyFromSecret(secret) {
  const privateKey = base64Decode(secret, "the stored private key");
  requireLength(privateKey, KEY_LENGTH, "the stored private key");
  return privateKey;
}

// --- signing ------------------------------------------------------------------------------

function signingBytes(obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new IdentityError("Only a JSON object can be signed");
  }
  const stripped = {};
  for (const [key, value] of Object.entries(obj)) {
    if (key !== "signatures" && key !== "unsigned") stripped[key] = value;
  }
  return encoder.encode(canonicalJson(stripped));
}

function pkcs8(prefix, seed) {
  return concat(Uint8Array.from(prefix), seed);
}

async function ed25519Keys(seed) {
  const bytes = toBytes(seed, "an Ed25519 seed");
  requireLength(bytes, KEY_LENGTH, "an Ed25519 seed");
  const wrapped = pkcs8(PKCS8_ED25519_PREFIX, bytes);
  try {
    // WebCrypto cannot derive a public key from a private one; an extractable copy's JWK export
    // carries it as `x`. The key that signs is imported again, non-extractable.
    const exportable = await subtle.importKey("pkcs8", wrapped, "Ed25519", true, ["sign"]);
    const jwk = await subtle.exportKey("jwk", exportable);
    const signing = await subtle.importKey("pkcs8", wrapped, "Ed25519", false, ["sign"]);
    return { signing, publicKey: base64Unpadded(base64UrlDecode(jwk.x)) };
  } finally {
    wrapped.fill(0);
  }
}

function base64UrlDecode(text) {
  return base64Decode(text.replace(/-/g, "+").replace(/_/g, "/"), "a JWK field");
}

/**
 * Import a 32-byte Ed25519 seed: resolves to {publicKey (unpadded base64), sign(bytes)}, where
 * sign resolves to the 64-byte signature.
 */
export async function ed25519KeyPairFromSeed(seed) {
  const { signing, publicKey } = await ed25519Keys(seed);
  return {
    publicKey,
    async sign(message) {
      const data =
        typeof message === "string" ? encoder.encode(message) : toBytes(message, "the message");
      return new Uint8Array(await subtle.sign("Ed25519", signing, data));
    },
  };
}

/** The unpadded-base64 Ed25519 public key for a 32-byte seed. */
export async function ed25519PublicKey(seed) {
  return (await ed25519Keys(seed)).publicKey;
}

/**
 * Resolve to a copy of `obj` signed as signatures[userId]["ed25519:" + keyId]. `signatures`
 * and `unsigned` are not signed, so existing signatures are kept and merged.
 */
export async function signJson(obj, userId, keyId, seed) {
  const message = signingBytes(obj);
  const pair = await ed25519KeyPairFromSeed(seed);
  const signature = await pair.sign(message);
  const signed = structuredClone(obj);
  if (signed.signatures == null) signed.signatures = {};
  if (signed.signatures[userId] == null) signed.signatures[userId] = {};
  signed.signatures[userId][`ed25519:${keyId}`] = base64Unpadded(signature);
  return signed;
}

/**
 * Resolve to true if `obj` carries a valid signature by `publicKeyB64` as
 * signatures[userId]["ed25519:" + keyId]; false if it is missing, malformed or does not match.
 */
export async function verifySignature(obj, userId, keyId, publicKeyB64) {
  const signatureB64 = obj?.signatures?.[userId]?.[`ed25519:${keyId}`];
  if (typeof signatureB64 !== "string") return false;
  let signature;
  let publicKey;
  try {
    signature = base64Decode(signatureB64, "the signature");
    const raw = base64Decode(publicKeyB64, "the public key");
    if (raw.length !== KEY_LENGTH || signature.length !== 64) return false;
    publicKey = await subtle.importKey("raw", raw, "Ed25519", false, ["verify"]);
  } catch {
    return false;
  }
  let message;
  try {
    message = signingBytes(obj);
  } catch {
    return false; // not canonical-JSON encodable (floats, say), so not validly signed either
  }
  return subtle.verify("Ed25519", publicKey, signature, message);
}

/** An unsigned cross-signing key object for /keys/device_signing/upload. */
export function crossSigningKey(userId, usage, publicKeyB64) {
  const usages = typeof usage === "string" ? [usage] : Array.from(usage);
  const unknown = usages.filter((u) => !CROSS_SIGNING_USAGES.includes(u));
  if (usages.length === 0 || unknown.length > 0) {
    const allowed = [...CROSS_SIGNING_USAGES].sort().map(pyRepr).join(", ");
    throw new IdentityError(
      `Cross-signing key usage must be among [${allowed}], got [${usages.map(pyRepr).join(", ")}]`,
    );
  }
  return {
    user_id: userId,
    usage: usages,
    keys: { [`ed25519:${publicKeyB64}`]: publicKeyB64 },
  };
}

// --- key backup (m.megolm_backup.v1.curve25519-aes-sha2) ----------------------------------

async function x25519Private(privateKey, what) {
  const bytes = toBytes(privateKey, what);
  requireLength(bytes, KEY_LENGTH, what);
  const wrapped = pkcs8(PKCS8_X25519_PREFIX, bytes);
  try {
    const key = await subtle.importKey("pkcs8", wrapped, "X25519", true, ["deriveBits"]);
    const jwk = await subtle.exportKey("jwk", key);
    return { key, publicKey: base64Unpadded(base64UrlDecode(jwk.x)) };
  } finally {
    wrapped.fill(0);
  }
}

async function x25519Public(raw) {
  return subtle.importKey("raw", raw, "X25519", false, []);
}

async function backupKeys(shared) {
  const derived = await hkdf(shared, new Uint8Array(0), 80);
  const keys = {
    aes: await subtle.importKey("raw", derived.slice(0, 32), "AES-CBC", false, [
      "encrypt",
      "decrypt",
    ]),
    macKey: derived.slice(32, 64),
    iv: derived.slice(64),
  };
  derived.fill(0);
  return keys;
}

// libolm's PkEncryption MAC: HMAC-SHA256 over the *empty* string, truncated to 8 bytes. It
// authenticates only the derived key; every implementation reproduces the quirk, so we must too.
async function backupMac(macKey) {
  const key = await subtle.importKey("raw", macKey, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  const full = new Uint8Array(await subtle.sign("HMAC", key, new Uint8Array(0)));
  return full.slice(0, BACKUP_MAC_LENGTH);
}

/** The backup's auth_data.public_key (unpadded base64 X25519) for a 32-byte private key. */
export async function backupPublicKey(privateKey) {
  return (await x25519Private(privateKey, "the backup private key")).publicKey;
}

// Compact JSON in the object's own key order (as JSON.stringify and serde write it, and as
// identity.py's json.dumps does), not canonical JSON.
function backupPlaintext(sessionData) {
  if (sessionData === null || typeof sessionData !== "object" || Array.isArray(sessionData)) {
    throw new IdentityError("The session to back up must be a JSON object");
  }
  return encoder.encode(JSON.stringify(sessionData));
}

/**
 * Encrypt one Megolm session for the backup: resolves to {ephemeral, ciphertext, mac}
 * (unpadded base64). Pass `ephemeralPrivate` only to reproduce a known answer.
 */
export async function encryptBackupSession(
  publicKeyB64,
  sessionData,
  ephemeralPrivate = undefined,
) {
  const raw = base64Decode(publicKeyB64, "the backup public key");
  requireLength(raw, KEY_LENGTH, "the backup public key");
  const publicKey = await x25519Public(raw);
  const ephemeralBytes =
    ephemeralPrivate == null
      ? globalThis.crypto.getRandomValues(new Uint8Array(KEY_LENGTH))
      : toBytes(ephemeralPrivate, "the ephemeral private key");
  const ephemeral = await x25519Private(ephemeralBytes, "the ephemeral private key");
  if (ephemeralPrivate == null) ephemeralBytes.fill(0);
  let shared;
  try {
    shared = new Uint8Array(
      await subtle.deriveBits({ name: "X25519", public: publicKey }, ephemeral.key, 256),
    );
  } catch {
    throw new IdentityError("The backup public key is malformed");
  }
  const keys = await backupKeys(shared);
  shared.fill(0);
  const plaintext = backupPlaintext(sessionData);
  const ciphertext = new Uint8Array(
    await subtle.encrypt({ name: "AES-CBC", iv: keys.iv }, keys.aes, plaintext),
  );
  plaintext.fill(0);
  return {
    ephemeral: ephemeral.publicKey,
    ciphertext: base64Unpadded(ciphertext),
    mac: base64Unpadded(await backupMac(keys.macKey)),
  };
}

/** Decrypt one backed-up session's session_data with the backup private key. */
export async function decryptBackupSession(privateKey, encrypted) {
  const backupKey = await x25519Private(privateKey, "the backup private key");
  const source = encrypted ?? {};
  const ephemeralBytes = base64Decode(source.ephemeral, "the session's ephemeral key");
  const ciphertext = base64Decode(source.ciphertext, "the session's ciphertext");
  const mac = base64Decode(source.mac, "the session's mac");
  let shared;
  try {
    if (ephemeralBytes.length !== KEY_LENGTH) throw new Error("length");
    const ephemeral = await x25519Public(ephemeralBytes);
    shared = new Uint8Array(
      await subtle.deriveBits({ name: "X25519", public: ephemeral }, backupKey.key, 256),
    );
  } catch {
    throw new IdentityError("The backed-up session has a malformed ephemeral key");
  }
  const keys = await backupKeys(shared);
  shared.fill(0);
  if (!constantTimeEqual(await backupMac(keys.macKey), mac)) {
    throw new BackupMacMismatch(
      "This backed-up session was not encrypted to this backup key; check that the backup " +
        "version and the recovery key belong together.",
    );
  }
  if (ciphertext.length === 0 || ciphertext.length % 16 !== 0) {
    throw new IdentityError("The backed-up session's ciphertext is truncated or corrupted");
  }
  let result;
  try {
    const plaintext = new Uint8Array(
      await subtle.decrypt({ name: "AES-CBC", iv: keys.iv }, keys.aes, ciphertext),
    );
    try {
      result = JSON.parse(strictDecoder.decode(plaintext));
    } finally {
      plaintext.fill(0);
    }
  } catch {
    // bad padding, bad UTF-8 and bad JSON alike
    throw new IdentityError("The backed-up session's ciphertext is corrupted");
  }
  if (result === null || typeof result !== "object" || Array.isArray(result)) {
    throw new IdentityError("The backed-up session did not decrypt to a JSON object");
  }
  return result;
}
