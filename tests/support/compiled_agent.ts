/**
 * The built binary `dist/agent` for end-to-end tests: built once per test process by
 * `bash compile.sh`, or reused when it is newer than every source file.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's root directory. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The built agent. */
export const AGENT = join(ROOT, "dist", "agent");
const SOURCES = ["main.ts", "deno.json", "deno.lock", "compile.sh", "lib", "executors", "server"];
/** The user's cache: kept so that the launcher unpacks once, not once per test HOME. */
export const CACHE_HOME = Deno.env.get("XDG_CACHE_HOME") ??
  join(Deno.env.get("HOME") ?? "/tmp", ".cache");

/** The newest modification time among the agent's sources, in ms. */
async function newestSource(path: string): Promise<number> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
  if (!info.isDirectory) return info.mtime?.getTime() ?? 0;
  let newest = info.mtime?.getTime() ?? 0;
  for await (const entry of Deno.readDir(path)) {
    newest = Math.max(newest, await newestSource(join(path, entry.name)));
  }
  return newest;
}

let built: Promise<void> | undefined;

/** Builds dist/agent unless it is newer than every source file (once per process). */
export function ensureBuilt(): Promise<void> {
  built ??= (async () => {
    let binaryTime = 0;
    try {
      binaryTime = (await Deno.stat(AGENT)).mtime?.getTime() ?? 0;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    const sourceTimes = await Promise.all(SOURCES.map((s) => newestSource(join(ROOT, s))));
    if (binaryTime > Math.max(...sourceTimes)) return;
    const { code, stdout, stderr } = await new Deno.Command("bash", {
      args: ["compile.sh"],
      cwd: ROOT,
      stdin: "null",
    }).output();
    const text = new TextDecoder();
    assert.equal(
      code,
      0,
      `bash compile.sh failed:\n${text.decode(stdout)}\n${text.decode(stderr)}`,
    );
  })();
  return built;
}
