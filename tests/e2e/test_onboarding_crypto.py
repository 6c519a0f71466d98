"""The browser's onboarding crypto (bridge/web/static/onboarding-crypto.js) in real Chromium.

The module is served the way sealroom serves it (same-origin static file, sealroom's strict CSP)
and run against every known-answer vector in tests/vectors/matrix-identity.json, then
cross-checked with random keys against the Python reference, bridge.matrix.identity: whatever one
side encrypts, signs or encodes, the other must decrypt, verify or decode. No Synapse needed.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from bridge.matrix import identity
from bridge.web.middleware import CSP, SECURITY_HEADERS
from tests.support import vectors

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "bridge" / "web" / "static"
PAGE = ROOT / "tests" / "support" / "crypto_page.html"
VECTORS: dict[str, Any] = vectors.load("matrix-identity.json")
MODULE = "/static/onboarding-crypto.js"

RECOVERY = VECTORS["recovery_keys"]
SSSS = VECTORS["secret_storage"]
SIGNATURES = VECTORS["signatures"]
BACKUP = VECTORS["key_backup"]
# The device whose keys the vectors sign; a device's own key id is its device id.
(DEVICE_ID,) = {
    c["object"]["device_id"] for c in SIGNATURES["cases"] if "device_id" in c["object"]
}

# Runs in the page before each snippet: the module (the instance the page loaded), hex helpers,
# and `attempt`, which turns a rejection into {error: {name, reason, message}}.
PRELUDE = """
const m = await import(%(module)s);
const fromHex = (h) => Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const attempt = async (f) => {
  try {
    return { value: await f() };
  } catch (e) {
    return {
      error: {
        name: e.name, reason: e.reason ?? null, message: String(e.message),
        identity: e instanceof m.IdentityError,
      },
    };
  }
};
"""


class CryptoPage:
    """One Chromium page with the module loaded, and what its console and CSP reported."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.url = url
        self.console_errors: list[str] = []

    async def run(self, body: str, arg: Any = None) -> Any:
        """Evaluate ``body`` (an async function body with ``m``, ``arg``, helpers in scope)."""
        prelude = PRELUDE % {"module": json.dumps(MODULE)}
        script = f"async (arg) => {{{prelude}\n{body}\n}}"
        result = await self.page.evaluate(script, arg)
        assert self.console_errors == []
        return result

    async def violations(self) -> list[Any]:
        return await self.page.evaluate("() => window.__cspViolations")


# sealroom's headers with its strict page CSP: script-src 'self', no eval, no inline script.
HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": CSP}


def _serve_app() -> web.Application:
    @web.middleware
    async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(HEADERS)
        return response

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")

    app = web.Application(middlewares=[security_headers])
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    return app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def crypto(browser: Any) -> AsyncIterator[CryptoPage]:
    runner = web.AppRunner(_serve_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    context = await browser.new_context()
    try:
        page = await context.new_page()
        page.set_default_timeout(15_000)
        crypto_page = CryptoPage(page, f"http://127.0.0.1:{port}/")
        page.on(
            "console",
            lambda msg: (
                crypto_page.console_errors.append(msg.text) if msg.type == "error" else None
            ),
        )
        page.on("pageerror", lambda err: crypto_page.console_errors.append(str(err)))
        # Init scripts come in through DevTools, so the CSP under test does not apply to them.
        await page.add_init_script(
            "window.__cspViolations = [];"
            "document.addEventListener('securitypolicyviolation', (e) =>"
            " window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        response = await page.goto(crypto_page.url)
        assert response is not None
        assert response.ok
        assert response.headers["content-security-policy"] == CSP
        await page.wait_for_load_state("load")
        yield crypto_page
    finally:
        await context.close()
        await runner.cleanup()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-")


def _reason(text: str) -> str | None:
    """What the Python reference says about a recovery key: its rejection reason, or None."""
    try:
        identity.decode_recovery_key(text)
    except identity.RecoveryKeyInvalid as err:
        return err.reason
    return None


def _python_error(text: str) -> str:
    try:
        identity.decode_recovery_key(text)
    except identity.RecoveryKeyInvalid as err:
        return str(err)
    raise AssertionError("expected a rejection")


def _assert_no_secret(message: str, *secrets_: str) -> None:
    for secret in secrets_:
        assert secret not in message
        assert secret.replace(" ", "") not in message


# --- recovery keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector", RECOVERY["valid"], ids=[v["key_hex"][:8] for v in RECOVERY["valid"]]
)
async def test_valid_recovery_key(crypto: CryptoPage, vector: dict[str, Any]) -> None:
    result = await crypto.run(
        """
        const key = fromHex(arg.key_hex);
        const decoded = [arg.recovery_key, ...arg.also_accepted].map(
          (text) => toHex(m.decodeRecoveryKey(text)));
        return { encoded: m.encodeRecoveryKey(key), decoded };
        """,
        vector,
    )
    assert result["encoded"] == vector["recovery_key"]
    assert result["decoded"] == [vector["key_hex"]] * (1 + len(vector["also_accepted"]))


@pytest.mark.parametrize(
    "vector", RECOVERY["invalid"], ids=[_slug(v["why"]) for v in RECOVERY["invalid"]]
)
async def test_invalid_recovery_key(crypto: CryptoPage, vector: dict[str, Any]) -> None:
    expected = _reason(vector["recovery_key"])
    assert expected is not None
    result = await crypto.run(
        "return await attempt(() => m.decodeRecoveryKey(arg));", vector["recovery_key"]
    )
    error = result["error"]
    assert error["name"] == "RecoveryKeyInvalid"
    assert error["identity"]
    assert error["reason"] == expected
    assert error["message"] == _python_error(vector["recovery_key"])
    _assert_no_secret(error["message"], vector["recovery_key"])


_VALID = RECOVERY["valid"][3]["recovery_key"]
_EDGE_INPUTS = {
    "empty": "",
    "only-spaces": "   \t\n ",
    "nbsp-and-ideographic-space": _VALID.replace(" ", "\u00a0", 3).replace(" ", "\u3000", 2),
    "python-only-whitespace": _VALID.replace(" ", "\x1c", 2).replace(" ", "\x85", 2),
    "byte-order-mark": "\ufeff" + _VALID,
    "zero-width-space": _VALID.replace(" ", "\u200b", 1),
    "far-too-long": "2" * 71,
    "just-long-enough-to-decode": "2" * 70,
    "astral-characters": "\U0001f511" * 36,
    "one-character-dropped": _VALID[:-1],
    "one-character-added": _VALID + "2",
    "lowercase-l": _VALID[:-1] + "l",
    "leading-ones": "1111" + _VALID,
    "single-one": "1",
    "swapped-characters": _VALID[:5] + _VALID[6] + _VALID[5] + _VALID[7:],
}


@pytest.mark.parametrize("text", list(_EDGE_INPUTS.values()), ids=list(_EDGE_INPUTS))
async def test_recovery_key_edge_inputs_agree_with_python(crypto: CryptoPage, text: str) -> None:
    result = await crypto.run("return await attempt(() => toHex(m.decodeRecoveryKey(arg)));", text)
    expected = _reason(text)
    if expected is None:
        assert result == {"value": identity.decode_recovery_key(text).hex()}
    else:
        assert result["error"]["reason"] == expected
        assert result["error"]["message"] == _python_error(text)


# --- secret storage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector", SSSS["key_check"], ids=[v["iv_base64"] for v in SSSS["key_check"]]
)
async def test_key_check(crypto: CryptoPage, vector: dict[str, Any]) -> None:
    wrong = secrets.token_bytes(32).hex()
    result = await crypto.run(
        """
        const key = m.decodeRecoveryKey(arg.v.recovery_key);
        const description = {
          algorithm: m.SECRET_STORAGE_ALGORITHM, iv: arg.v.iv_base64, mac: arg.v.mac_base64,
        };
        const made = await m.keyDescription(key, { iv: m.base64Decode(arg.v.iv_base64) });
        const named = await m.keyDescription(key, { name: "Recovery key" });
        return {
          key: toHex(key),
          ok: await m.checkKey(key, description),
          wrong: await m.checkKey(fromHex(arg.wrong), description),
          made,
          named,
          namedOk: await m.checkKey(key, named),
          otherAlgorithm: await attempt(() => m.checkKey(key, { ...description, algorithm: "x" })),
          noMac: await attempt(
            () => m.checkKey(key, { algorithm: description.algorithm, iv: arg.v.iv_base64 })),
        };
        """,
        {"v": vector, "wrong": wrong},
    )
    assert result["key"] == vector["key_hex"]
    assert result["ok"] is True
    assert result["wrong"] is False
    assert result["made"] == {
        "algorithm": identity.SECRET_STORAGE_ALGORITHM,
        "iv": vector["iv_base64"],
        "mac": vector["mac_base64"],
    }
    assert list(result["named"]) == ["algorithm", "iv", "mac", "name"]
    assert result["namedOk"] is True
    assert identity.check_key(bytes.fromhex(vector["key_hex"]), result["named"])
    assert result["otherAlgorithm"]["error"]["identity"]
    assert result["noMac"]["error"]["identity"]


@pytest.mark.parametrize("vector", SSSS["secrets"], ids=[v["name"] for v in SSSS["secrets"]])
async def test_secret(crypto: CryptoPage, vector: dict[str, Any]) -> None:
    result = await crypto.run(
        """
        const key = fromHex(arg.key_hex);
        const derived = await m.deriveSecretKeys(key, arg.name);
        return {
          plaintext: await m.decryptSecret(key, arg.name, arg.encrypted),
          encrypted: await m.encryptSecret(
            key, arg.name, arg.plaintext, m.base64Decode(arg.encrypted.iv)),
          aesKey: toHex(derived.aesKey),
          macKey: toHex(derived.macKey),
          random: await m.encryptSecret(key, arg.name, arg.plaintext),
        };
        """,
        vector,
    )
    key = bytes.fromhex(vector["key_hex"])
    assert result["plaintext"] == vector["plaintext"]
    assert result["encrypted"] == vector["encrypted"]
    assert list(result["encrypted"]) == ["iv", "ciphertext", "mac"]
    aes_key, mac_key = identity.derive_keys(key, vector["name"])
    assert (result["aesKey"], result["macKey"]) == (aes_key.hex(), mac_key.hex())
    random_iv = identity._b64_decode(result["random"]["iv"], "iv")
    assert len(random_iv) == 16
    assert random_iv[8] & 0x80 == 0  # bit 63 cleared
    assert result["random"]["iv"] != vector["encrypted"]["iv"]
    assert identity.decrypt_secret(key, vector["name"], result["random"]) == vector["plaintext"]


async def test_tampered_secret_is_rejected(crypto: CryptoPage) -> None:
    vector = SSSS["tampered"]
    result = await crypto.run(
        "return await attempt(\n"
        "  () => m.decryptSecret(fromHex(arg.key_hex), arg.name, arg.encrypted));",
        vector,
    )
    error = result["error"]
    assert error["name"] == "SecretStorageMacMismatch"
    assert error["identity"]
    assert vector["name"] in error["message"]
    assert "bad MAC" in vector["js_sdk_error"]
    _assert_no_secret(error["message"], vector["key_hex"])
    with pytest.raises(identity.SecretStorageMacMismatch) as python:
        identity.decrypt_secret(
            bytes.fromhex(vector["key_hex"]), vector["name"], vector["encrypted"]
        )
    assert error["message"] == str(python.value)


async def test_secret_under_the_wrong_name_is_rejected(crypto: CryptoPage) -> None:
    case = SSSS["wrong_name"]
    (secret,) = [s for s in SSSS["secrets"] if s["name"] == case["encrypted_for"]]
    result = await crypto.run(
        """
        const key = fromHex(arg.secret.key_hex);
        return {
          wrong: await attempt(() => m.decryptSecret(key, arg.name, arg.secret.encrypted)),
          right: await m.decryptSecret(key, arg.secret.name, arg.secret.encrypted),
          wrongKey: await attempt(() => m.decryptSecret(
            fromHex(arg.other), arg.secret.name, arg.secret.encrypted)),
        };
        """,
        {"secret": secret, "name": case["name_used"], "other": secrets.token_bytes(32).hex()},
    )
    assert result["wrong"]["error"]["name"] == "SecretStorageMacMismatch"
    assert case["name_used"] in result["wrong"]["error"]["message"]
    assert result["right"] == secret["plaintext"]
    assert result["wrongKey"]["error"]["name"] == "SecretStorageMacMismatch"
    _assert_no_secret(result["wrong"]["error"]["message"], secret["key_hex"], secret["plaintext"])


async def test_private_key_secret_encoding(crypto: CryptoPage) -> None:
    result = await crypto.run(
        """
        const key = m.privateKeyFromSecret(arg.private_key_base64);
        return {
          key: toHex(key),
          secret: m.secretFromPrivateKey(key),
          unpadded: toHex(m.privateKeyFromSecret(arg.private_key_base64.replace(/=+$/, ""))),
          short: await attempt(() => m.privateKeyFromSecret("AAAA")),
          garbage: await attempt(() => m.privateKeyFromSecret("not base64!")),
        };
        """,
        BACKUP,
    )
    assert result["key"] == BACKUP["private_key_hex"]
    assert result["secret"] == BACKUP["private_key_base64"]
    assert result["secret"] == identity.secret_from_private_key(bytes.fromhex(result["key"]))
    assert result["unpadded"] == BACKUP["private_key_hex"]
    assert result["short"]["error"]["identity"]
    assert result["garbage"]["error"]["identity"]
    # The backup key is itself stored as the m.megolm_backup.v1 secret in the vectors.
    (stored,) = [s for s in SSSS["secrets"] if s["name"] == "m.megolm_backup.v1"]
    assert stored["plaintext"] == BACKUP["private_key_base64"]


# --- signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("signer", list(SIGNATURES["seeds_hex"]))
async def test_ed25519_public_key(crypto: CryptoPage, signer: str) -> None:
    seed = SIGNATURES["seeds_hex"][signer]
    result = await crypto.run(
        """
        const pair = await m.ed25519KeyPairFromSeed(fromHex(arg));
        return { pair: pair.publicKey, single: await m.ed25519PublicKey(fromHex(arg)) };
        """,
        seed,
    )
    expected = SIGNATURES["public_keys_unpadded_base64"][signer]
    assert result == {"pair": expected, "single": expected}
    assert identity.ed25519_public_key(bytes.fromhex(seed)) == expected


@pytest.mark.parametrize(
    "case", SIGNATURES["cases"], ids=[_slug(c["what"].split(" (")[0]) for c in SIGNATURES["cases"]]
)
async def test_signature(crypto: CryptoPage, case: dict[str, Any]) -> None:
    signer = case["signer"]
    seed = SIGNATURES["seeds_hex"][signer]
    public = SIGNATURES["public_keys_unpadded_base64"][signer]
    key_id = DEVICE_ID if signer == "device_ed25519" else public
    user_id = "@sealroom:example.org"
    other = identity.ed25519_public_key(secrets.token_bytes(32))
    result = await crypto.run(
        """
        const { c, seed, keyId, userId, publicKey, other } = arg;
        const signed = await m.signJson(c.object, userId, keyId, fromHex(seed));
        const again = await m.signJson(
          { ...signed, unsigned: { changed: true } }, "@other:example.org", "X", fromHex(seed));
        const tampered = structuredClone(signed);
        tampered.user_id = "@mallory:example.org";
        const extra = { ...structuredClone(signed), extra: 1 };
        const usage = c.object.usage;
        return {
          canonical: m.canonicalJson(
            Object.fromEntries(Object.entries(c.object).filter(([k]) => k !== "unsigned"))),
          signed,
          untouched: !("signatures" in c.object),
          again,
          ok: await m.verifySignature(signed, userId, keyId, publicKey),
          okUnpaddedOrPadded: await m.verifySignature(signed, userId, keyId, publicKey + "="),
          tampered: await m.verifySignature(tampered, userId, keyId, publicKey),
          extra: await m.verifySignature(extra, userId, keyId, publicKey),
          wrongKey: await m.verifySignature(signed, userId, keyId, other),
          wrongUser: await m.verifySignature(signed, "@other:example.org", keyId, publicKey),
          malformedKey: await m.verifySignature(signed, userId, keyId, "!!"),
          crossSigning: usage
            ? m.crossSigningKey(c.object.user_id, usage, Object.values(c.object.keys)[0])
            : null,
        };
        """,
        {
            "c": case,
            "seed": seed,
            "keyId": key_id,
            "userId": user_id,
            "publicKey": public,
            "other": other,
        },
    )
    assert result["canonical"] == case["canonical_json"]
    assert identity._signing_bytes(case["object"]).decode() == case["canonical_json"]
    signed = result["signed"]
    assert signed["signatures"] == {
        user_id: {f"ed25519:{key_id}": case["signature_unpadded_base64"]}
    }
    assert {k: v for k, v in signed.items() if k != "signatures"} == case["object"]
    assert signed == identity.sign_json(case["object"], user_id, key_id, bytes.fromhex(seed))
    assert result["untouched"] is True
    identity.verify_signature(signed, user_id, key_id, public)
    # Re-signing merges: the first signature stays, `unsigned` is not covered.
    assert result["again"]["signatures"][user_id] == signed["signatures"][user_id]
    assert result["again"]["signatures"]["@other:example.org"] == {
        "ed25519:X": case["signature_unpadded_base64"]
    }
    assert result["ok"] is True
    assert result["okUnpaddedOrPadded"] is True
    assert result["tampered"] is False
    assert result["extra"] is False
    assert result["wrongKey"] is False
    assert result["wrongUser"] is False
    assert result["malformedKey"] is False
    if "usage" in case["object"]:
        expected = {k: v for k, v in case["object"].items() if k not in ("signatures", "unsigned")}
        assert result["crossSigning"] == expected
        assert list(result["crossSigning"]) == ["user_id", "usage", "keys"]
        public_key = next(iter(case["object"]["keys"].values()))
        assert result["crossSigning"] == identity.cross_signing_key(
            case["object"]["user_id"], case["object"]["usage"], public_key
        )


async def test_cross_signing_key_rejects_unknown_usage(crypto: CryptoPage) -> None:
    result = await crypto.run(
        """
        return {
          unknown: await attempt(() => m.crossSigningKey("@a:b", "backup", "K")),
          none: await attempt(() => m.crossSigningKey("@a:b", [], "K")),
          list: m.crossSigningKey("@a:b", ["master"], "K"),
        };
        """
    )
    for name in ("unknown", "none"):
        assert result[name]["error"]["identity"]
    with pytest.raises(identity.IdentityError) as python:
        identity.cross_signing_key("@a:b", "backup", "K")
    assert result["unknown"]["error"]["message"] == str(python.value)
    assert result["list"] == identity.cross_signing_key("@a:b", ["master"], "K")


_CANONICAL_INPUTS = {
    "nested-and-unicode": {
        "z": {"b": [1, -2, True, None, False], "a": "ü€ 💡"},
        "a": 'quote " backslash \\ newline \n tab \t nul \u0000 del \u007f',
        "é": 9007199254740991,
        "": -9007199254740991,
    },
    # U+FF5E sorts before U+1F511 by code point, after it by UTF-16 code unit.
    "astral-keys": {"\U0001f511": 1, "\uff5e": 2, "\ue000": 3, "a": 4},
    "separators": {"\u2028": "\u2029", "<>&'": "</script>"},
    "empty": {"list": [], "object": {}},
}


@pytest.mark.parametrize("value", list(_CANONICAL_INPUTS.values()), ids=list(_CANONICAL_INPUTS))
async def test_canonical_json_agrees_with_python(crypto: CryptoPage, value: Any) -> None:
    result = await crypto.run(
        "return toHex(new TextEncoder().encode(m.canonicalJson(arg)));", value
    )
    assert bytes.fromhex(result) == identity.canonical_json(value)


async def test_canonical_json_rejects_floats(crypto: CryptoPage) -> None:
    result = await crypto.run(
        """
        return {
          float: await attempt(() => m.canonicalJson({ a: 1.5 })),
          big: await attempt(() => m.canonicalJson({ a: 2 ** 53 })),
          nan: await attempt(() => m.canonicalJson({ a: NaN })),
          func: await attempt(() => m.canonicalJson({ a: () => 1 })),
        };
        """
    )
    for name in ("float", "big", "nan", "func"):
        assert result[name]["error"]["identity"], name


# --- key backup ---------------------------------------------------------------------------


async def test_key_backup_vector(crypto: CryptoPage) -> None:
    wrong = secrets.token_bytes(32).hex()
    result = await crypto.run(
        """
        const privateKey = fromHex(arg.v.private_key_hex);
        const session = await m.decryptBackupSession(privateKey, arg.v.session_data);
        const again = await m.encryptBackupSession(
          arg.v.public_key_unpadded_base64, session, fromHex(arg.v.ephemeral_private_hex));
        const fromPlaintext = await m.encryptBackupSession(
          arg.v.public_key_unpadded_base64, JSON.parse(arg.v.plaintext),
          fromHex(arg.v.ephemeral_private_hex));
        const tamperedMac = { ...arg.v.session_data, mac: "AAAAAAAAAAA" };
        const truncated = {
          ...arg.v.session_data, ciphertext: arg.v.session_data.ciphertext.slice(0, 10) };
        const badEphemeral = { ...arg.v.session_data, ephemeral: "AAAA" };
        return {
          publicKey: await m.backupPublicKey(privateKey),
          session,
          order: JSON.stringify(session),
          again,
          fromPlaintext,
          wrongKey: await attempt(
            () => m.decryptBackupSession(fromHex(arg.wrong), arg.v.session_data)),
          tamperedMac: await attempt(() => m.decryptBackupSession(privateKey, tamperedMac)),
          truncated: await attempt(() => m.decryptBackupSession(privateKey, truncated)),
          badEphemeral: await attempt(() => m.decryptBackupSession(privateKey, badEphemeral)),
          random: await m.encryptBackupSession(arg.v.public_key_unpadded_base64, session),
        };
        """,
        {"v": BACKUP, "wrong": wrong},
    )
    private = bytes.fromhex(BACKUP["private_key_hex"])
    assert result["publicKey"] == BACKUP["public_key_unpadded_base64"]
    assert result["session"] == json.loads(BACKUP["plaintext"])
    assert result["order"] == BACKUP["plaintext"]  # key order kept, compact
    assert result["again"] == BACKUP["session_data"]
    assert list(result["again"]) == ["ephemeral", "ciphertext", "mac"]
    assert result["fromPlaintext"] == BACKUP["session_data"]
    assert result["wrongKey"]["error"]["name"] == "BackupMacMismatch"
    assert result["tamperedMac"]["error"]["name"] == "BackupMacMismatch"
    assert result["truncated"]["error"]["identity"]
    assert result["badEphemeral"]["error"]["identity"]
    for name in ("wrongKey", "tamperedMac", "truncated", "badEphemeral"):
        _assert_no_secret(result[name]["error"]["message"], BACKUP["private_key_hex"], wrong)
        _assert_no_secret(result[name]["error"]["message"], BACKUP["private_key_base64"])
    assert result["random"]["ephemeral"] != BACKUP["session_data"]["ephemeral"]
    assert identity.decrypt_backup_session(private, result["random"]) == result["session"]


# --- cross-checks with the Python reference, random keys ----------------------------------


async def test_recovery_keys_cross_check(crypto: CryptoPage) -> None:
    python_keys = [secrets.token_bytes(32) for _ in range(8)]
    result = await crypto.run(
        """
        const browser = [];
        for (let i = 0; i < 8; i++) {
          const key = m.generateRecoveryKey();
          browser.push({ key: toHex(key), text: m.encodeRecoveryKey(key) });
        }
        const python = arg.map((k) => ({
          decoded: toHex(m.decodeRecoveryKey(k.text)),
          encoded: m.encodeRecoveryKey(fromHex(k.key)),
        }));
        return { browser, python };
        """,
        [
            {"key": k.hex(), "text": identity.encode_recovery_key(k).replace(" ", "")}
            for k in python_keys
        ],
    )
    keys = [entry["key"] for entry in result["browser"]]
    assert len(set(keys)) == 8
    for entry in result["browser"]:
        assert len(entry["key"]) == 64
        assert identity.decode_recovery_key(entry["text"]).hex() == entry["key"]
        assert identity.encode_recovery_key(bytes.fromhex(entry["key"])) == entry["text"]
    for key, entry in zip(python_keys, result["python"], strict=True):
        assert entry["decoded"] == key.hex()
        assert entry["encoded"] == identity.encode_recovery_key(key)


_PLAINTEXTS = {
    "seed": "y8+7npHzQcn3qcoCdyJ8RbrCdneQgeL3OkbwVtR8MEw=",
    "empty": "",
    "unicode": "pässwörd ✓ 🔑 \u2028 \ufeffbom",
    "long": "x" * 1000,
}


@pytest.mark.parametrize("plaintext", list(_PLAINTEXTS.values()), ids=list(_PLAINTEXTS))
async def test_secret_cross_check(crypto: CryptoPage, plaintext: str) -> None:
    key = secrets.token_bytes(32)
    name = "m.cross_signing.master"
    # An IV whose low 64-bit half is all ones: the counter must carry into the high half.
    carry_iv = secrets.token_bytes(8) + b"\xff" * 8
    from_python = identity.encrypt_secret(key, name, plaintext)
    from_python_carry = identity.encrypt_secret(key, name, plaintext, carry_iv)
    result = await crypto.run(
        """
        const key = fromHex(arg.key);
        return {
          browser: await m.encryptSecret(key, arg.name, arg.plaintext),
          carry: await m.encryptSecret(key, arg.name, arg.plaintext, fromHex(arg.carryIv)),
          python: await m.decryptSecret(key, arg.name, arg.fromPython),
          pythonCarry: await m.decryptSecret(key, arg.name, arg.fromPythonCarry),
          description: await m.keyDescription(key),
        };
        """,
        {
            "key": key.hex(),
            "name": name,
            "plaintext": plaintext,
            "carryIv": carry_iv.hex(),
            "fromPython": from_python,
            "fromPythonCarry": from_python_carry,
        },
    )
    assert identity.decrypt_secret(key, name, result["browser"]) == plaintext
    assert result["carry"] == from_python_carry
    assert result["python"] == plaintext
    assert result["pythonCarry"] == plaintext
    assert identity.check_key(key, result["description"])
    assert not identity.check_key(secrets.token_bytes(32), result["description"])


async def test_signature_cross_check(crypto: CryptoPage) -> None:
    seed = secrets.token_bytes(32)
    user_id = "@customer:example.org"
    obj = {
        "user_id": user_id,
        "usage": ["master"],
        "keys": {"ed25519:K": "K"},
        "nested": {"é": [1, 2, {"b": "ü", "a": None}]},
        "unsigned": {"note": "not signed"},
        "signatures": {"@someone:example.org": {"ed25519:Z": "kept"}},
    }
    from_python = identity.sign_json(obj, user_id, "PYKEY", seed)
    result = await crypto.run(
        """
        const seed = fromHex(arg.seed);
        const pair = await m.ed25519KeyPairFromSeed(seed);
        const signed = await m.signJson(arg.obj, arg.userId, pair.publicKey, seed);
        const raw = await pair.sign(new TextEncoder().encode(m.canonicalJson({ a: 1 })));
        return {
          publicKey: pair.publicKey,
          signed,
          raw: m.base64Unpadded(raw),
          python: await m.verifySignature(arg.fromPython, arg.userId, "PYKEY", pair.publicKey),
          missing: await m.verifySignature(arg.obj, "@nobody:example.org", "K", pair.publicKey),
          float: await m.verifySignature(
            { ...arg.fromPython, n: 1.5 }, arg.userId, "PYKEY", pair.publicKey),
        };
        """,
        {"seed": seed.hex(), "obj": obj, "userId": user_id, "fromPython": from_python},
    )
    public = identity.ed25519_public_key(seed)
    assert result["publicKey"] == public
    identity.verify_signature(result["signed"], user_id, public, public)
    assert result["signed"]["signatures"]["@someone:example.org"] == {"ed25519:Z": "kept"}
    assert result["signed"]["unsigned"] == obj["unsigned"]
    assert result["signed"] == identity.sign_json(obj, user_id, public, seed)
    assert (
        result["raw"]
        == identity.sign_json({"a": 1}, "u", "k", seed)["signatures"]["u"]["ed25519:k"]
    )
    assert result["python"] is True
    assert result["missing"] is False
    assert result["float"] is False


async def test_backup_cross_check(crypto: CryptoPage) -> None:
    private = secrets.token_bytes(32)
    public = identity.backup_public_key(private)
    session = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "sender_key": "c2VuZGVy",
        "sender_claimed_keys": {"ed25519": "Y2xhaW1lZA"},
        "forwarding_curve25519_key_chain": [],
        "session_key": "QUJD" * 40,
        "note": "ünïcødé 🔑",
    }
    from_python = identity.encrypt_backup_session(public, session)
    result = await crypto.run(
        """
        const privateKey = fromHex(arg.privateKey);
        const publicKey = await m.backupPublicKey(privateKey);
        return {
          publicKey,
          browser: await m.encryptBackupSession(publicKey, arg.session),
          python: await m.decryptBackupSession(privateKey, arg.fromPython),
          pythonOrder: JSON.stringify(await m.decryptBackupSession(privateKey, arg.fromPython)),
        };
        """,
        {"privateKey": private.hex(), "session": session, "fromPython": from_python},
    )
    assert result["publicKey"] == public
    decrypted = identity.decrypt_backup_session(private, result["browser"])
    assert decrypted == session
    assert list(decrypted) == list(session)
    assert result["python"] == session
    assert result["pythonOrder"] == json.dumps(session, separators=(",", ":"), ensure_ascii=False)
    ephemeral = secrets.token_bytes(32)
    fixed = await crypto.run(
        "return await m.encryptBackupSession(arg.public, arg.session, fromHex(arg.ephemeral));",
        {"public": public, "session": session, "ephemeral": ephemeral.hex()},
    )
    assert fixed == identity.encrypt_backup_session(public, session, ephemeral)


# --- the page itself ----------------------------------------------------------------------


async def test_module_exports(crypto: CryptoPage) -> None:
    names = await crypto.run("return Object.keys(m).sort();")
    for name in (
        "generateRecoveryKey",
        "encodeRecoveryKey",
        "decodeRecoveryKey",
        "canonicalJson",
        "deriveSecretKeys",
        "encryptSecret",
        "decryptSecret",
        "keyDescription",
        "checkKey",
        "ed25519KeyPairFromSeed",
        "signJson",
        "verifySignature",
        "crossSigningKey",
        "backupPublicKey",
        "encryptBackupSession",
        "decryptBackupSession",
        "secretFromPrivateKey",
        "privateKeyFromSecret",
    ):
        assert name in names


async def test_no_console_errors_or_csp_violations(crypto: CryptoPage) -> None:
    """Runs last: everything above happened under sealroom's CSP without a complaint."""
    assert crypto.console_errors == []
    assert await crypto.violations() == []
    # The page really loaded the module itself (not only through the tests' import()).
    loaded = await crypto.page.evaluate(
        "() => performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)"
    )
    assert MODULE in loaded
