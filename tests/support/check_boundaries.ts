/**
 * The module arrows of DESIGN.md as an allowed-imports table, checked by scanning the import
 * specifiers of `main.ts`, `lib/`, `executors/` and `server/` (`deno task boundaries`).
 *
 * Rules:
 * - nothing in `lib/` or `executors/` imports `hono` or `server/`;
 * - only `main.ts` imports `commander`;
 * - `executors/` never imports `lib/job.ts`;
 * - `lib/` never imports `executors/`, except `lib/job.ts` and type-only (`import type`)
 *   imports of `executors/executor.ts`;
 * - `server/` never imports `executors/`;
 * - no product module imports `main.ts` or `tests/`.
 *
 * Prints one line per violation and exits 1 when there is any.
 *
 * @module
 */

import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

/** One import found in a source file. */
export interface ImportRecord {
  /** The specifier as written. */
  readonly specifier: string;
  /** `import type` / `export type`: erased at run time. */
  readonly typeOnly: boolean;
  /** 1-based line of the import. */
  readonly line: number;
}

/** One broken rule. */
export interface Violation {
  /** Repository-relative path of the importing file. */
  readonly file: string;
  readonly line: number;
  readonly specifier: string;
  /** Which rule it breaks, in words. */
  readonly rule: string;
}

/** Replaces comments by spaces (keeping line breaks), leaving strings and code in place. */
function stripComments(source: string): string {
  let out = "";
  let i = 0;
  while (i < source.length) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      while (i < source.length && source[i] !== "\n") {
        out += " ";
        i++;
      }
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end === -1 ? source.length : end + 2;
      out += source.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < source.length && source[j] !== c) {
        if (source[j] === "\\") j++;
        if (c !== "`" && source[j] === "\n") break;
        j++;
      }
      out += source.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const STATIC_IMPORT =
  /(?:^|[;\n}])\s*(import|export)\s+(type\s+)?(?:[\w$*{}\s,]+?\s+from\s+)?(["'])([^"'\n]+)\3/g;
const DYNAMIC_IMPORT = /\bimport\s*\(\s*(["'])([^"'\n]+)\1\s*[,)]/g;

/** Lists the import and re-export specifiers of one TypeScript source. */
export function scanImports(source: string): ImportRecord[] {
  const code = stripComments(source);
  const lineOf = (index: number) => code.slice(0, index).split("\n").length;
  const found: ImportRecord[] = [];
  for (const m of code.matchAll(STATIC_IMPORT)) {
    const at = m.index + m[0].indexOf(m[1]);
    found.push({ specifier: m[4], typeOnly: m[2] !== undefined, line: lineOf(at) });
  }
  for (const m of code.matchAll(DYNAMIC_IMPORT)) {
    found.push({ specifier: m[2], typeOnly: false, line: lineOf(m.index) });
  }
  return found.sort((a, b) => a.line - b.line);
}

/** What an import points at: a repository path (`lib/job.ts`) or a package (`pkg:hono`). */
function resolveTarget(file: string, specifier: string): string {
  if (specifier.startsWith("./") || specifier.startsWith("../")) {
    return normalize(join(dirname(file), specifier)).replaceAll("\\", "/");
  }
  const bare = specifier.replace(/^(npm|jsr):\/?/, "");
  const scoped = bare.startsWith("@");
  const parts = bare.split("/");
  const name = (scoped ? parts.slice(0, 2).join("/") : parts[0]).replace(/(.)@[^/]*$/, "$1");
  return `pkg:${name === "@hono/hono" ? "hono" : name}`;
}

/** Checks one file's imports against the table; `file` is repository-relative with `/`. */
export function checkFile(file: string, imports: readonly ImportRecord[]): Violation[] {
  const violations: Violation[] = [];
  const inLib = file.startsWith("lib/");
  const inExecutors = file.startsWith("executors/");
  const inServer = file.startsWith("server/");
  for (const { specifier, typeOnly, line } of imports) {
    const target = resolveTarget(file, specifier);
    const flag = (rule: string) => violations.push({ file, line, specifier, rule });
    if ((inLib || inExecutors) && target === "pkg:hono") {
      flag("lib/ and executors/ never import hono");
    }
    if ((inLib || inExecutors) && target.startsWith("server/")) {
      flag("lib/ and executors/ never import server/");
    }
    if (target === "pkg:commander" && file !== "main.ts") {
      flag("only main.ts imports commander");
    }
    if (inExecutors && target === "lib/job.ts") {
      flag("executors/ never import lib/job.ts");
    }
    if (
      inLib && target.startsWith("executors/") && file !== "lib/job.ts" &&
      !(typeOnly && target === "executors/executor.ts")
    ) {
      flag("lib/ imports executors/ only from lib/job.ts or as `import type` of executor.ts");
    }
    if (inServer && target.startsWith("executors/")) {
      flag("server/ never imports executors/");
    }
    if (target === "main.ts" || target.startsWith("tests/")) {
      flag("product modules never import main.ts or tests/");
    }
  }
  return violations;
}

async function* sourceFiles(root: string, dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(join(root, dir))) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* sourceFiles(root, path);
    else if (/\.(ts|tsx|js|mjs)$/.test(entry.name)) yield path;
  }
}

/** Checks `main.ts`, `lib/`, `executors/` and `server/` under `root`. */
export async function checkRepository(root: string): Promise<Violation[]> {
  const files = ["main.ts"];
  for (const dir of ["lib", "executors", "server"]) {
    try {
      for await (const file of sourceFiles(root, dir)) files.push(file);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  const violations: Violation[] = [];
  for (const file of files.sort()) {
    const source = await Deno.readTextFile(join(root, file));
    violations.push(...checkFile(file, scanImports(source)));
  }
  return violations;
}

if (import.meta.main) {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const violations = await checkRepository(root);
  for (const v of violations) {
    console.log(
      `${relative(Deno.cwd(), join(root, v.file))}:${v.line}: "${v.specifier}": ${v.rule}`,
    );
  }
  if (violations.length > 0) {
    console.log(`boundaries: ${violations.length} violation(s)`);
    Deno.exit(1);
  }
  console.log("boundaries: ok");
}
