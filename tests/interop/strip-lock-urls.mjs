// Remove every URL from package-lock.json (npm keeps the packages' "funding" links even with
// omit-lockfile-registry-resolved), so the committed lock names no host. `npm ci` ignores them.
// Run through `npm run relock` after changing package.json (here and in tests/a11y).
import { readFileSync, writeFileSync } from "node:fs";

// A lock file named on the command line (relative to this script), else the one beside it.
const path = new URL(process.argv[2] ?? "./package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
for (const entry of Object.values(lock.packages ?? {})) {
    delete entry.funding;
    if (typeof entry.resolved === "string" && /^https?:/.test(entry.resolved)) {
        delete entry.resolved;
    }
}
const text = JSON.stringify(lock, null, 2) + "\n";
if (/https?:/.test(text)) {
    console.error("package-lock.json still contains a URL:");
    console.error(text.split("\n").filter((line) => /https?:/.test(line)).join("\n"));
    process.exit(1);
}
writeFileSync(path, text);
