/**
 * The module arrows of DESIGN.md as an allowed-imports table, checked by scanning the import
 * specifiers of `main.ts`, `lib/`, `executors/` and `server/` (`deno task boundaries`).
 *
 * Every product file belongs to one area, and an area imports only the areas its row names:
 *
 * | area        | folder           | may import                                                |
 * |-------------|------------------|-----------------------------------------------------------|
 * | util        | `lib/util/`      | util                                                      |
 * | engine      | `lib/engine/`    | util                                                      |
 * | executors   | `executors/`     | engine, util                                              |
 * | reporting   | `lib/reporting/` | engine, util                                              |
 * | telemetry   | `lib/telemetry/` | engine, util (Prometheus metrics, health, readiness)      |
 * | start, run, serve (the modes: `lib/start/`, `lib/run/`, `server/`) | | engine, util, reporting, telemetry, and of `executors/` `for_job.ts` and `shell_ahead.ts` alone |
 * | main        | `main.ts`        | util, and each mode only through a dynamic `import()`     |
 *
 * So the arrows run one way (main → modes → executors → engine → util), no mode imports
 * another, and who builds a job's executor is decided in `executors/for_job.ts` alone
 * (`executors/shell_ahead.ts` only starts a job's shell early, for `agent run`: importing it
 * does not load the executors).
 * Packages: `hono` and `jose` belong to serve, `commander` to main, `prom-client` to telemetry. No product module imports
 * `tests/`, and `lib/` has no files outside its areas.
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
  /** `import("...")`: evaluated only when that code runs. */
  readonly dynamic?: boolean;
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
    found.push({ specifier: m[2], typeOnly: false, line: lineOf(m.index), dynamic: true });
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

/** The areas of the product tree (see the module comment). */
type Area =
  | "util"
  | "engine"
  | "executors"
  | "reporting"
  | "telemetry"
  | "start"
  | "run"
  | "serve"
  | "main";

const MODES: readonly Area[] = ["start", "run", "serve"];

/** Which areas each area may import (its own included). */
const ALLOWED: Readonly<Record<Area, readonly Area[]>> = {
  util: ["util"],
  engine: ["engine", "util"],
  executors: ["executors", "engine", "util"],
  reporting: ["reporting", "engine", "util"],
  telemetry: ["telemetry", "engine", "util"],
  start: ["start", "reporting", "telemetry", "engine", "util", "executors"],
  run: ["run", "reporting", "telemetry", "engine", "util", "executors"],
  serve: ["serve", "reporting", "telemetry", "engine", "util", "executors"],
  main: ["main", "util", "start", "run", "serve"],
};

/** Packages that belong to one area only. */
const PACKAGE_OWNERS: Readonly<Record<string, Area>> = {
  "pkg:hono": "serve",
  "pkg:jose": "serve",
  "pkg:commander": "main",
  "pkg:prom-client": "telemetry",
};

/** The modules of `executors/` that the modes may import. */
const EXECUTOR_ENTRIES = ["executors/for_job.ts", "executors/shell_ahead.ts"];

/** The area of a repository path, or undefined outside the product tree. */
function areaOf(path: string): Area | undefined {
  if (path === "main.ts") return "main";
  if (path.startsWith("executors/")) return "executors";
  if (path.startsWith("server/")) return "serve";
  const lib = /^lib\/(util|engine|reporting|telemetry|start|run)\//.exec(path);
  return lib ? lib[1] as Area : undefined;
}

/** Checks one file's imports against the table; `file` is repository-relative with `/`. */
export function checkFile(file: string, imports: readonly ImportRecord[]): Violation[] {
  const violations: Violation[] = [];
  const from = areaOf(file);
  if (from === undefined) {
    if (file.startsWith("lib/")) {
      violations.push({
        file,
        line: 1,
        specifier: "",
        rule: "every file of lib/ lives in util/, engine/, reporting/, telemetry/, start/ or run/",
      });
    }
    return violations;
  }
  for (const { specifier, line, dynamic } of imports) {
    const target = resolveTarget(file, specifier);
    const flag = (rule: string) => violations.push({ file, line, specifier, rule });
    if (target.startsWith("pkg:")) {
      const owner = PACKAGE_OWNERS[target];
      if (owner !== undefined && owner !== from) {
        flag(`only ${owner} imports ${target.slice(4)}`);
      }
      continue;
    }
    if (target === "main.ts" || target.startsWith("tests/")) {
      flag("product modules never import main.ts or tests/");
      continue;
    }
    if (target === "deno.json") continue; // the version, read by lib/util/version.ts
    const to = areaOf(target);
    if (to === undefined) {
      flag("imports a file outside the product areas");
    } else if (!ALLOWED[from].includes(to)) {
      flag(`${from} never imports ${to} (allowed: ${ALLOWED[from].join(", ")})`);
    } else if (MODES.includes(from) && to === "executors" && !EXECUTOR_ENTRIES.includes(target)) {
      flag(`modes import executors only through ${EXECUTOR_ENTRIES.join(" and ")}`);
    } else if (from === "main" && MODES.includes(to) && !dynamic) {
      flag("main.ts loads a mode only with a dynamic import(), so each command loads itself");
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
