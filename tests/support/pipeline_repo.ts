/**
 * Temporary git repositories holding pipeline files, and the `agent run` CLI run in them as a
 * child process with its state, cache and config under a private temporary HOME.
 *
 * @module
 */

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Runs git in `dir` and returns its stdout; throws when git fails. */
export function gitIn(dir: string, ...args: string[]): string {
  const out = new Deno.Command("git", {
    args: ["-C", dir, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .outputSync();
  if (!out.success) {
    throw new Error(`git ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout).trim();
}

/** Writes `files` (path → text) under `dir`, making directories. */
export async function writeFiles(dir: string, files: Readonly<Record<string, string>>) {
  for (const [path, text] of Object.entries(files)) {
    const full = `${dir}/${path}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(full, text);
  }
}

/** A git repository on branch `branch` with `files` committed; removed at unload. */
export async function makeRepo(
  files: Readonly<Record<string, string>>,
  branch = "master",
): Promise<string> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "pipeline-repo-" }));
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  gitIn(dir, "init", "-q", "-b", branch);
  gitIn(dir, "config", "user.email", "dev@example.com");
  gitIn(dir, "config", "user.name", "Dev Eloper");
  await writeFiles(dir, files);
  gitIn(dir, "add", "-A");
  gitIn(dir, "commit", "-q", "-m", "first");
  return dir;
}

/** What one `agent run` child process did. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The private HOME (state under .local/state, cache under .cache). */
  readonly home: string;
}

/** Runs `agent run ARGS` in `cwd` with a fresh HOME (or `home`) and returns what it did. */
export async function runAgent(
  cwd: string,
  args: readonly string[],
  options: { home?: string; env?: Record<string, string> } = {},
): Promise<CliRun> {
  const home = options.home ?? await Deno.makeTempDir({ prefix: "pipeline-home-" });
  if (!options.home) {
    globalThis.addEventListener("unload", () => Deno.removeSync(home, { recursive: true }));
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, "run", ...args],
    cwd,
    env: {
      HOME: home,
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      LANG: "C.UTF-8",
      NO_COLOR: "1",
      DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
      ...options.env,
    },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
    home,
  };
}
