/**
 * Go's `path.Clean`: the shortest path naming the same file, by lexical processing only
 * (`a/../b` → `b`, `./x` → `x`, `a//b` → `a/b`, `/..` → `/`, `` → `.`). Used where the original
 * relies on Go cleaning a path: `filepath.Join` of job file paths, gorilla/mux's redirects. Also
 * the directory part of a path.
 *
 * @module
 */

/**
 * Cleans `path` as Go's `path.Clean` does.
 *
 * @example
 * ```ts
 * import { cleanPath } from "./clean_path.ts";
 * import assert from "node:assert/strict";
 * assert.equal(cleanPath("/home/u/a/../rel.txt"), "/home/u/rel.txt");
 * ```
 */
export function cleanPath(path: string): string {
  const rooted = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out.at(-1) !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(part);
  }
  const clean = (rooted ? "/" : "") + out.join("/");
  return clean === "" ? "." : clean;
}

/**
 * The directory part of `path` (all but its last element), without cleaning: `.` for a bare
 * name as Go's `path.Dir` gives it, `/` for an entry of the root.
 *
 * @example
 * ```ts
 * import { parentDir } from "./clean_path.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parentDir("/tmp/a/b.txt"), "/tmp/a");
 * assert.equal(parentDir("/b.txt"), "/");
 * assert.equal(parentDir("b.txt"), ".");
 * ```
 */
export function parentDir(path: string): string {
  const i = path.lastIndexOf("/");
  if (i === -1) return ".";
  return i === 0 ? "/" : path.slice(0, i);
}
