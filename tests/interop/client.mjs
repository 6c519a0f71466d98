// An independent Matrix client for sealroom's tests: matrix-js-sdk with its Rust crypto (WASM),
// driven over JSON lines.
//
// Protocol: one request per line on stdin, {"id": n, "cmd": "...", ...args}; one answer per line
// on stdout, {"id": n, "ok": true, ...result} or {"id": n, "ok": false, "error": "..."}.
// Requests run concurrently (a `wait_message` may be pending while a `send` runs). Everything
// else, including the SDK's and the WASM crypto's own logging, goes to stderr.
//
// One process is one device of one account: `login` first, `stop` last.

import { createInterface } from "node:readline";

// -- stdout belongs to the protocol -------------------------------------------------------------
// The SDK logs through console.log/debug (loglevel) and the WASM tracing through console.*: send
// all of it to stderr, and keep the real stdout writer for answers only.
const writeAnswer = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
for (const name of ["log", "info", "debug", "trace", "warn"]) {
    console[name] = (...args) => console.error(...args);
}

const sdk = await import("matrix-js-sdk");
const { logger } = await import("matrix-js-sdk/lib/logger.js");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");
const RustSdkCryptoJs = await import("@matrix-org/matrix-sdk-crypto-wasm");

logger.setLevel(process.env.JSCLIENT_LOG_LEVEL || "info");

const SECRET_NAMES = [
    "m.cross_signing.master",
    "m.cross_signing.self_signing",
    "m.cross_signing.user_signing",
    "m.megolm_backup.v1",
];

function log(...args) {
    console.error(new Date().toISOString(), "[jsclient]", ...args);
}

// -- state --------------------------------------------------------------------------------------

/** @type {import("matrix-js-sdk").MatrixClient | null} */
let client = null;
let crypto = null;
let userId = null;
let deviceId = null;
let strict = false;
/** The secret-storage key the callbacks hand out: {keyId: string|null, key: Uint8Array} */
let ssssKey = null;
let backupKeyFromSecretStorage = false;
/** roomId -> Set of MatrixEvent (m.room.message and m.room.encrypted seen in timelines) */
const roomEvents = new Map();

// Waiters are woken on every sync, timeline event, decryption and membership change.
let waiters = [];
function bump() {
    const current = waiters;
    waiters = [];
    for (const resolve of current) resolve();
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntil(check, timeoutSeconds, what) {
    const deadline = Date.now() + (timeoutSeconds ?? 30) * 1000;
    for (;;) {
        const result = await check();
        if (result) return result;
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
            const detail = typeof what === "function" ? what() : what;
            throw new Error(`timed out after ${timeoutSeconds ?? 30} s waiting for ${detail}`);
        }
        await Promise.race([
            new Promise((resolve) => waiters.push(resolve)),
            sleep(Math.min(remaining, 250)),
        ]);
    }
}

function requireClient() {
    if (!client) throw new Error("not logged in: send `login` first");
    return client;
}

function need(args, name) {
    const value = args[name];
    if (value === undefined || value === null || value === "") {
        throw new Error(`missing argument ${name}`);
    }
    return value;
}

// -- secret storage callbacks --------------------------------------------------------------------

const cryptoCallbacks = {
    // Hand out the recovery key given to `open_secret_storage` (or made by `bootstrap`) for the
    // account's default secret-storage key, and nothing else.
    getSecretStorageKey: async ({ keys }, name) => {
        if (!ssssKey) {
            log(`getSecretStorageKey(${name}): no key loaded`);
            return null;
        }
        let keyId = ssssKey.keyId;
        if (!keyId || !(keyId in keys)) {
            const defaultKeyId = await client.secretStorage.getDefaultKeyId();
            keyId = defaultKeyId && defaultKeyId in keys ? defaultKeyId : null;
        }
        if (!keyId) {
            log(`getSecretStorageKey(${name}): none of ${Object.keys(keys)} is the loaded key`);
            return null;
        }
        return [keyId, ssssKey.key];
    },
    cacheSecretStorageKey: (keyId, _keyInfo, key) => {
        ssssKey = { keyId, key };
    },
};

// -- events -------------------------------------------------------------------------------------

function onTimeline(event, room) {
    if (!room) return;
    const type = event.getWireType ? event.getWireType() : event.getType();
    if (type !== "m.room.message" && type !== "m.room.encrypted") return;
    let events = roomEvents.get(room.roomId);
    if (!events) {
        events = new Set();
        roomEvents.set(room.roomId, events);
    }
    events.add(event);
    bump();
}

/** Classify what this client holds for a room: decrypted messages, failures, pending. */
function roomState(roomId) {
    const messages = [];
    const undecryptable = [];
    let pending = 0;
    const seen = new Set();
    for (const event of roomEvents.get(roomId) ?? []) {
        const eventId = event.getId();
        // Local echoes (status set) carry a temporary id until the server has the event.
        if (event.status || !eventId || eventId.startsWith("~") || seen.has(eventId)) continue;
        seen.add(eventId);
        const wire = event.getWireContent() ?? {};
        if (event.isBeingDecrypted() || event.shouldAttemptDecryption()) {
            pending += 1;
        } else if (event.isDecryptionFailure()) {
            undecryptable.push({
                event_id: eventId,
                sender: event.getSender(),
                reason: event.decryptionFailureReason ?? "UNKNOWN",
                sender_device: wire.device_id ?? null,
                session_id: wire.session_id ?? null,
                ts: event.getTs(),
            });
        } else if (event.getType() === "m.room.message") {
            const content = event.getContent();
            messages.push({
                event_id: eventId,
                sender: event.getSender(),
                body: content.body,
                msgtype: content.msgtype,
                encrypted: event.isEncrypted(),
                sender_device: wire.device_id ?? null,
                ts: event.getTs(),
                event,
            });
        }
    }
    const byTs = (a, b) => a.ts - b.ts;
    messages.sort(byTs);
    undecryptable.sort(byTs);
    return { messages, undecryptable, pending };
}

async function shieldOf(event) {
    if (!event.isEncrypted()) return { colour: "NONE", reason: null, encrypted: false };
    try {
        const info = await crypto.getEncryptionInfoForEvent(event);
        if (!info) return null;
        return {
            colour: cryptoApi.EventShieldColour[info.shieldColour] ?? info.shieldColour,
            reason:
                info.shieldReason === null
                    ? null
                    : (cryptoApi.EventShieldReason[info.shieldReason] ?? info.shieldReason),
        };
    } catch (err) {
        return { error: String(err) };
    }
}

async function publicMessage(message) {
    const { event, ...rest } = message;
    return { ...rest, shield: await shieldOf(event) };
}

// -- helpers ------------------------------------------------------------------------------------

function passwordUia(password, record) {
    // Try without auth first: Synapse lets an account upload its first cross-signing keys without
    // UIA (MSC3967); otherwise answer the 401 with the password stage of the session it returned.
    return async (makeRequest) => {
        try {
            const result = await makeRequest(null);
            record.push("none");
            return result;
        } catch (err) {
            if (err?.httpStatus !== 401 || !err?.data?.flows) throw err;
            const stages = err.data.flows.map((flow) => flow.stages.join(","));
            log(`UIA required, flows: ${stages.join(" | ")}`);
            record.push("m.login.password");
            return await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: userId },
                password,
                session: err.data.session,
            });
        }
    };
}

/** Make the OlmMachine (re-)query a user's keys now, as a fresh client would. */
async function refreshUserKeys(targetUserId) {
    // Internal API (RustCrypto.olmMachine, .outgoingRequestsManager): the CryptoApi has no
    // "download now" for a tracked user, and getDeviceVerificationStatus only knows devices of
    // users the OlmMachine tracks.
    const olmMachine = crypto.olmMachine;
    const manager = crypto.outgoingRequestsManager;
    if (!olmMachine || !manager) {
        await crypto.getUserDeviceInfo([targetUserId], true);
        return false;
    }
    await olmMachine.updateTrackedUsers([new RustSdkCryptoJs.UserId(targetUserId)]);
    await olmMachine.markAllTrackedUsersAsDirty();
    await manager.doProcessOutgoingRequests();
    return true;
}

async function serverKeys(targetUserId, targetDeviceId) {
    const raw = await client.downloadKeysForUsers([targetUserId]);
    const firstKey = (keyObject) => {
        const keys = Object.values(keyObject?.keys ?? {});
        return keys.length ? keys[0] : null;
    };
    const master = firstKey(raw.master_keys?.[targetUserId]);
    const selfSigning = firstKey(raw.self_signing_keys?.[targetUserId]);
    const device = raw.device_keys?.[targetUserId]?.[targetDeviceId];
    const signatures = Object.keys(device?.signatures?.[targetUserId] ?? {});
    return {
        master_key: master,
        self_signing_key: selfSigning,
        device_listed: Boolean(device),
        device_signature_keys: signatures,
        device_signed_by_self_signing_key: Boolean(
            selfSigning && signatures.includes(`ed25519:${selfSigning}`),
        ),
    };
}

async function ownDeviceCrossSigned() {
    const status = await crypto.getDeviceVerificationStatus(userId, deviceId);
    return Boolean(status?.signedByOwner && status?.crossSigningVerified);
}

/**
 * The SDK waits a random 0-10 s before each key-backup upload (so that clients do not all hit
 * the server at once). Tests want the room keys in the backup at once: cap that delay.
 * Internal API (RustCrypto.backupManager.backupKeysLoop(maxDelay)); left alone if it is gone.
 */
function limitBackupDelay(maxDelayMs) {
    const manager = crypto.backupManager;
    if (typeof manager?.backupKeysLoop !== "function") {
        log("no backupManager.backupKeysLoop: key-backup uploads keep their random delay");
        return;
    }
    const original = manager.backupKeysLoop.bind(manager);
    manager.backupKeysLoop = (maxDelay = 10000) => original(Math.min(maxDelay, maxDelayMs));
}

/** Re-query our own keys until this device shows as cross-signed; false after the timeout. */
async function settleOwnCrossSigning(timeoutSeconds) {
    try {
        return await waitUntil(
            async () => (await ownDeviceCrossSigned()) || (await refreshUserKeys(userId), false),
            Math.min(timeoutSeconds ?? 15, 15),
            "this device to show as cross-signed",
        );
    } catch (err) {
        log(String(err));
        return false;
    }
}

async function waitForOwnKeysOnServer(timeoutSeconds) {
    await waitUntil(
        async () => {
            const raw = await client.downloadKeysForUsers([userId]);
            return Boolean(raw.device_keys?.[userId]?.[deviceId]);
        },
        timeoutSeconds,
        `device ${deviceId} keys on the server`,
    );
}

/**
 * Whether the room is encrypted, once the crypto has caught up with the room state: the Rust
 * crypto learns of m.room.encryption asynchronously, after the room shows up in sync. (A room
 * seen while Synapse is still creating it may not have its m.room.encryption event yet.)
 */
async function encryptionSettled(roomId, timeoutSeconds) {
    await waitUntil(
        async () =>
            !client.getRoom(roomId)?.hasEncryptionStateEvent() ||
            (await crypto.isEncryptionEnabledInRoom(roomId)),
        timeoutSeconds ?? 30,
        `the crypto to see encryption enabled in ${roomId}`,
    );
    return await crypto.isEncryptionEnabledInRoom(roomId);
}

// -- commands -----------------------------------------------------------------------------------

const commands = {
    async login(args) {
        if (client) throw new Error("already logged in");
        const started = Date.now();
        const baseUrl = need(args, "homeserver_url");
        const loginClient = sdk.createClient({ baseUrl });
        const response = await loginClient.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: need(args, "user_id") },
            password: need(args, "password"),
            initial_device_display_name: args.device_name || "sealroom js interop",
        });
        loginClient.stopClient();
        const loggedIn = Date.now();
        userId = response.user_id;
        deviceId = response.device_id;
        client = sdk.createClient({
            baseUrl,
            userId,
            deviceId,
            accessToken: response.access_token,
            cryptoCallbacks,
        });
        await client.initRustCrypto({ useIndexedDB: false });
        crypto = client.getCrypto();
        crypto.setDeviceIsolationMode(new cryptoApi.AllDevicesIsolationMode(false));
        limitBackupDelay(args.backup_max_delay_ms ?? 0);
        const cryptoReady = Date.now();
        client.on(sdk.RoomEvent.Timeline, onTimeline);
        client.on(sdk.MatrixEventEvent.Decrypted, bump);
        client.on(sdk.RoomEvent.MyMembership, bump);
        client.on(sdk.ClientEvent.Sync, bump);
        await client.startClient({ initialSyncLimit: 50 });
        await waitUntil(
            () => ["PREPARED", "SYNCING"].includes(client.getSyncState()),
            args.timeout ?? 60,
            () => `the first sync (state ${client.getSyncState()})`,
        );
        const synced = Date.now();
        await waitForOwnKeysOnServer(args.timeout ?? 60);
        const done = Date.now();
        log(`logged in ${userId} device ${deviceId} in ${done - started} ms`);
        return {
            user_id: userId,
            device_id: deviceId,
            crypto_version: crypto.getVersion(),
            timings_ms: {
                login: loggedIn - started,
                init_crypto: cryptoReady - loggedIn,
                first_sync: synced - cryptoReady,
                keys_uploaded: done - synced,
                total: done - started,
            },
        };
    },

    async set_strict(args) {
        requireClient();
        strict = Boolean(args.strict);
        crypto.setDeviceIsolationMode(
            strict
                ? new cryptoApi.OnlySignedDevicesIsolationMode()
                : new cryptoApi.AllDevicesIsolationMode(false),
        );
        return { strict };
    },

    async wait_invite(args) {
        requireClient();
        const wanted = args.room_id;
        const room = await waitUntil(
            () =>
                client
                    .getRooms()
                    .find(
                        (r) =>
                            r.getMyMembership() === "invite" && (!wanted || r.roomId === wanted),
                    ),
            args.timeout,
            `an invite to ${wanted || "any room"}`,
        );
        return { room_id: room.roomId };
    },

    async join(args) {
        requireClient();
        const roomId = need(args, "room_id");
        await client.joinRoom(roomId);
        await waitUntil(
            () => client.getRoom(roomId)?.getMyMembership() === "join",
            args.timeout,
            `room ${roomId} joined in sync`,
        );
        return { room_id: roomId, encrypted: await encryptionSettled(roomId, args.timeout) };
    },

    async create_room(args) {
        requireClient();
        const initialState = [];
        if (args.encrypted !== false) {
            initialState.push({
                type: "m.room.encryption",
                state_key: "",
                content: { algorithm: "m.megolm.v1.aes-sha2" },
            });
        }
        const { room_id: roomId } = await client.createRoom({
            preset: "private_chat",
            invite: args.invite ?? [],
            name: args.name,
            initial_state: initialState,
        });
        await waitUntil(
            () => client.getRoom(roomId)?.getMyMembership() === "join",
            args.timeout,
            `room ${roomId} in sync`,
        );
        if (args.encrypted !== false) {
            // Synapse's sync may show the room before all of its initial state is in.
            await waitUntil(
                () => crypto.isEncryptionEnabledInRoom(roomId),
                args.timeout,
                `encryption in the new room ${roomId}`,
            );
        }
        return { room_id: roomId, encrypted: args.encrypted !== false };
    },

    async invite(args) {
        requireClient();
        await client.invite(need(args, "room_id"), need(args, "user_id"));
        return {};
    },

    async wait_joined(args) {
        // Until this client has seen `user_id` join, so its next send encrypts for them.
        requireClient();
        const roomId = need(args, "room_id");
        const member = need(args, "user_id");
        await waitUntil(
            () => client.getRoom(roomId)?.getMember(member)?.membership === "join",
            args.timeout,
            `${member} joining ${roomId}`,
        );
        return {};
    },

    async wait_message(args) {
        requireClient();
        const roomId = need(args, "room_id");
        const { sender, contains } = args;
        let last = { undecryptable: [], pending: 0 };
        const found = await waitUntil(
            () => {
                last = roomState(roomId);
                return last.messages.find(
                    (m) =>
                        (sender ? m.sender === sender : m.sender !== userId) &&
                        (contains === undefined || (m.body ?? "").includes(contains)),
                );
            },
            args.timeout,
            () =>
                `a message in ${roomId}` +
                (sender ? ` from ${sender}` : "") +
                (contains !== undefined ? ` containing ${JSON.stringify(contains)}` : "") +
                `; ${last.undecryptable.length} undecryptable ` +
                JSON.stringify(last.undecryptable.map((u) => [u.sender, u.reason])) +
                `, ${last.pending} pending decryption`,
        );
        return {
            ...(await publicMessage(found)),
            undecryptable: last.undecryptable.length,
            undecryptable_reasons: last.undecryptable.map((u) => u.reason),
        };
    },

    async messages(args) {
        requireClient();
        const state = roomState(need(args, "room_id"));
        return {
            messages: await Promise.all(state.messages.map(publicMessage)),
            undecryptable: state.undecryptable,
            pending: state.pending,
        };
    },

    async send(args) {
        requireClient();
        const roomId = need(args, "room_id");
        await waitUntil(
            () => client.getRoom(roomId)?.getMyMembership() === "join",
            args.timeout ?? 30,
            `room ${roomId} joined`,
        );
        let encrypted;
        if (args.allow_unencrypted) {
            encrypted = await encryptionSettled(roomId, args.timeout ?? 30);
        } else {
            // A room seen mid-creation lacks part of its initial state: wait for it.
            await waitUntil(
                () => crypto.isEncryptionEnabledInRoom(roomId),
                args.timeout ?? 30,
                `encryption in ${roomId} (pass allow_unencrypted to send in the clear)`,
            );
            encrypted = true;
        }
        const response = await client.sendMessage(roomId, {
            msgtype: args.msgtype || "m.text",
            body: need(args, "body"),
        });
        return { event_id: response.event_id, encrypted };
    },

    async device_status(args) {
        requireClient();
        const targetUser = need(args, "user_id");
        const targetDevice = need(args, "device_id");
        const refreshed = args.refresh === false ? false : await refreshUserKeys(targetUser);
        const devices = (await crypto.getUserDeviceInfo([targetUser], true)).get(targetUser);
        const device = devices?.get(targetDevice);
        const status = await crypto.getDeviceVerificationStatus(targetUser, targetDevice);
        const userStatus = await crypto.getUserVerificationStatus(targetUser);
        let masterKey = null;
        const identity = await crypto.olmMachine?.getIdentity(
            new RustSdkCryptoJs.UserId(targetUser),
        );
        if (identity) {
            try {
                masterKey = Object.values(JSON.parse(identity.masterKey).keys ?? {})[0] ?? null;
            } finally {
                identity.free();
            }
        }
        const result = {
            refreshed,
            device_known: Boolean(device),
            device_display_name: device?.displayName ?? null,
            status_known: Boolean(status),
            signedByOwner: status?.signedByOwner ?? false,
            crossSigningVerified: status?.crossSigningVerified ?? false,
            localVerified: status?.localVerified ?? false,
            isVerified: status ? status.isVerified() : false,
            user: {
                isVerified: userStatus.isVerified(),
                isCrossSigningVerified: userStatus.isCrossSigningVerified(),
                wasCrossSigningVerified: userStatus.wasCrossSigningVerified(),
                needsUserApproval: userStatus.needsUserApproval,
            },
            cross_signing: {
                has_keys: await crypto.userHasCrossSigningKeys(targetUser, true),
                master_key: masterKey,
                own_master_key_id:
                    targetUser === userId
                        ? await crypto.getCrossSigningKeyId(cryptoApi.CrossSigningKey.Master)
                        : null,
            },
            server: await serverKeys(targetUser, targetDevice),
        };
        return result;
    },

    async open_secret_storage(args) {
        requireClient();
        let key;
        try {
            key = cryptoApi.decodeRecoveryKey(need(args, "recovery_key"));
        } catch (err) {
            throw new Error(`invalid recovery key: ${err.message ?? err}`);
        }
        const defaultKey = await client.secretStorage.getKey();
        if (!defaultKey) throw new Error("the account has no default secret-storage key");
        const [keyId, keyInfo] = defaultKey;
        const keyOk = await client.secretStorage.checkKey(key, keyInfo);
        ssssKey = { keyId, key };
        const stored = {};
        const secrets = {};
        const errors = {};
        try {
            for (const name of SECRET_NAMES) {
                stored[name] = Boolean(await client.secretStorage.isStored(name));
                try {
                    const value = await client.secretStorage.get(name);
                    secrets[name] = typeof value === "string" && value.length > 0;
                } catch (err) {
                    secrets[name] = false;
                    errors[name] = String(err.message ?? err);
                }
            }
        } finally {
            if (!keyOk) ssssKey = null; // never let a wrong key near a later write
        }
        const result = { key_ok: keyOk, key_id: keyId, stored, secrets, errors };
        if (!keyOk) {
            return { ...result, own_device_cross_signed: await ownDeviceCrossSigned() };
        }
        await refreshUserKeys(userId);
        await crypto.bootstrapCrossSigning({});
        if (secrets["m.megolm_backup.v1"]) {
            try {
                await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
                backupKeyFromSecretStorage = true;
                await crypto.checkKeyBackupAndEnable();
            } catch (err) {
                errors["load_backup_key"] = String(err.message ?? err);
            }
        }
        // The OlmMachine learns of the signature it just uploaded only from a key query.
        result.own_device_cross_signed = await settleOwnCrossSigning(args.timeout);
        result.cross_signing_ready = await crypto.isCrossSigningReady();
        result.backup_key_loaded = backupKeyFromSecretStorage;
        result.server = await serverKeys(userId, deviceId);
        return result;
    },

    async backup_info(args) {
        requireClient();
        const check = await crypto.checkKeyBackupAndEnable();
        const info = check?.backupInfo ?? (await crypto.getKeyBackupInfo());
        if (!info) return { version: null };
        const trust = await crypto.isKeyBackupTrusted(info);
        const privateKey = await crypto.getSessionBackupPrivateKey();
        const result = {
            version: info.version ?? null,
            algorithm: info.algorithm,
            count: info.count ?? null,
            trusted: trust.trusted,
            matches_decryption_key: trust.matchesDecryptionKey,
            active_version: await crypto.getActiveSessionBackupVersion(),
            has_private_key: Boolean(privateKey),
            key_from_secret_storage: backupKeyFromSecretStorage,
        };
        const restore = args.restore ?? backupKeyFromSecretStorage;
        if (restore && privateKey && trust.matchesDecryptionKey) {
            const restored = await crypto.restoreKeyBackup();
            result.restored = { total: restored.total, imported: restored.imported };
        }
        return result;
    },

    async bootstrap(args) {
        requireClient();
        const password = need(args, "password");
        const uia = [];
        await refreshUserKeys(userId);
        await crypto.bootstrapCrossSigning({
            authUploadDeviceSigningKeys: passwordUia(password, uia),
            setupNewCrossSigning: Boolean(args.reset),
        });
        let generated = null;
        await crypto.bootstrapSecretStorage({
            createSecretStorageKey: async () => {
                generated = await crypto.createRecoveryKeyFromPassphrase();
                return generated;
            },
            setupNewSecretStorage: true,
            setupNewKeyBackup: true,
        });
        if (!generated) throw new Error("bootstrapSecretStorage did not create a key");
        // resetKeyBackup starts checkKeyBackupAndEnable without awaiting it: finish it here.
        const check = await crypto.checkKeyBackupAndEnable();
        return {
            recovery_key: generated.encodedPrivateKey,
            key_id: await client.secretStorage.getDefaultKeyId(),
            uia,
            cross_signing_ready: await crypto.isCrossSigningReady(),
            secret_storage_ready: await crypto.isSecretStorageReady(),
            backup_version: await crypto.getActiveSessionBackupVersion(),
            backup_trusted: check?.trustInfo?.trusted ?? false,
            own_device_cross_signed: await settleOwnCrossSigning(args.timeout),
        };
    },

    async whoami() {
        requireClient();
        return { user_id: userId, device_id: deviceId, strict };
    },

    async stop() {
        if (client) client.stopClient();
        setTimeout(() => process.exit(0), 50);
        return {};
    },
};

// -- the loop -----------------------------------------------------------------------------------

function answer(message) {
    writeAnswer(JSON.stringify(message) + "\n");
}

async function handle(line) {
    let request;
    try {
        request = JSON.parse(line);
    } catch (err) {
        answer({ id: null, ok: false, error: `bad JSON: ${err.message}` });
        return;
    }
    const { id, cmd, ...args } = request;
    const command = Object.hasOwn(commands, cmd) ? commands[cmd] : null;
    if (!command) {
        answer({ id, ok: false, error: `unknown command ${JSON.stringify(cmd)}` });
        return;
    }
    const started = Date.now();
    try {
        const result = await command(args);
        log(`${cmd} #${id} ok in ${Date.now() - started} ms`);
        answer({ id, ok: true, ...result });
    } catch (err) {
        const detail = err?.errcode ? `${err.errcode}: ${err.message}` : String(err?.message ?? err);
        log(`${cmd} #${id} failed in ${Date.now() - started} ms:`, err);
        answer({ id, ok: false, error: detail });
    }
}

process.on("unhandledRejection", (err) => log("unhandled rejection:", err));

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
    if (line.trim()) void handle(line);
});
lines.on("close", () => {
    log("stdin closed, exiting");
    if (client) client.stopClient();
    setTimeout(() => process.exit(0), 50);
});
log(`ready (node ${process.version}, pid ${process.pid})`);
answer({ id: 0, ok: true, ready: true });
