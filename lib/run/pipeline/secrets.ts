/**
 * Secrets of a local pipeline run (PIPELINES.md §2.3, §6.3): read from files in the format
 * `sem get secret NAME` prints (one or more YAML documents, `kind: Secret` or `ProjectSecret`),
 * from `--secret-file` files and every `*.yml`/`*.yaml` of `--secrets-dir`, and from `-s`.
 *
 * Every env var value and file content of a secret is secret: {@linkcode secretValues} lists
 * them for the log redaction.
 *
 * @module
 */

import { parseAllDocuments } from "yaml";
import { PipelineError } from "./schema.ts";
import { decodeBase64Text } from "../../util/base64.ts";

/** One secret: env vars (raw values) and files (base64 contents). */
export interface Secret {
  readonly name: string;
  readonly envVars: readonly { readonly name: string; readonly value: string }[];
  readonly files: readonly { readonly path: string; readonly content: string }[];
  /** Where it was read. */
  readonly source: string;
}

/** Options of {@linkcode loadSecrets}. */
export interface LoadSecretsOptions {
  /** `--secret-file` files, in order (later files win). @default [] */
  readonly files?: readonly string[];
  /** `--secrets-dir`. @default $XDG_CONFIG_HOME/semaphore-agent/secrets */
  readonly dir?: string;
  /** `-s NAME:VAR=VALUE` (value already resolved). @default [] */
  readonly overrides?: readonly { secret: string; name: string; value: string }[];
  /** Receives warnings (a secrets file readable by others). */
  readonly warn?: (line: string) => void;
}

/** The default `--secrets-dir`. */
export function defaultSecretsDir(): string {
  const config = Deno.env.get("XDG_CONFIG_HOME") ?? `${Deno.env.get("HOME") ?? "/"}/.config`;
  return `${config}/semaphore-agent/secrets`;
}

function parseSecretsText(text: string, source: string): Secret[] {
  const secrets: Secret[] = [];
  const docs = parseAllDocuments(text, { prettyErrors: false });
  if (!Array.isArray(docs)) throw new PipelineError(`${source}: invalid YAML`);
  docs.forEach((doc, i) => {
    const where = docs.length > 1 ? `${source}: document ${i + 1}` : source;
    if (doc.errors.length > 0) {
      throw new PipelineError(`${where}: invalid YAML: ${doc.errors[0].message.split("\n")[0]}`);
    }
    const value = doc.toJS() as Record<string, unknown> | null;
    if (value === null) return;
    if (typeof value !== "object" || Array.isArray(value)) {
      throw new PipelineError(`${where}: expected a Secret mapping`);
    }
    if (value.kind !== "Secret" && value.kind !== "ProjectSecret") {
      throw new PipelineError(`${where}: kind: expected 'Secret' or 'ProjectSecret'`);
    }
    const metadata = value.metadata as Record<string, unknown> | undefined;
    if (typeof metadata?.name !== "string") {
      throw new PipelineError(`${where}: metadata.name: expected a string`);
    }
    const data = (value.data ?? {}) as Record<string, unknown>;
    const envVars = ((data.env_vars ?? []) as unknown[]).map((e, j) => {
      const item = e as Record<string, unknown>;
      if (typeof item?.name !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(item.name)) {
        throw new PipelineError(`${where}: data.env_vars[${j}].name: expected a variable name`);
      }
      const v = item.value ?? "";
      if (typeof v !== "string") {
        throw new PipelineError(`${where}: data.env_vars[${j}].value: expected a string`);
      }
      return { name: item.name, value: v };
    });
    const files = ((data.files ?? []) as unknown[]).map((f, j) => {
      const item = f as Record<string, unknown>;
      if (typeof item?.path !== "string") {
        throw new PipelineError(`${where}: data.files[${j}].path: expected a string`);
      }
      const content = item.content ?? "";
      if (typeof content !== "string") {
        throw new PipelineError(`${where}: data.files[${j}].content: expected base64 text`);
      }
      return { path: item.path, content: content.replace(/\s+/g, "") };
    });
    secrets.push({ name: metadata.name, envVars, files, source });
  });
  return secrets;
}

function readSecretsFile(path: string, warn?: (line: string) => void): Secret[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
    const mode = Deno.statSync(path).mode;
    if (mode !== null && (mode & 0o044) !== 0) {
      warn?.(`warning: secrets file '${path}' is readable by other users (chmod 600 it)`);
    }
  } catch (error) {
    throw new PipelineError(
      `Cannot read secrets file '${path}': ${error instanceof Error ? error.message : error}`,
    );
  }
  return parseSecretsText(text, path);
}

/**
 * Loads every secret the options name, later sources winning.
 *
 * @throws {PipelineError} an unreadable or invalid secrets file.
 */
export function loadSecrets(options: LoadSecretsOptions): Map<string, Secret> {
  const { files = [], dir = defaultSecretsDir(), overrides = [], warn } = options;
  const secrets = new Map<string, Secret>();
  let entries: string[] = [];
  try {
    entries = [...Deno.readDirSync(dir)]
      .filter((e) => e.isFile && /\.ya?ml$/.test(e.name))
      .map((e) => `${dir}/${e.name}`)
      .sort();
  } catch {
    // no secrets dir: only explicit files
  }
  for (const path of [...entries, ...files]) {
    for (const secret of readSecretsFile(path, warn)) secrets.set(secret.name, secret);
  }
  for (const { secret, name, value } of overrides) {
    const old = secrets.get(secret) ?? { name: secret, envVars: [], files: [], source: "-s" };
    secrets.set(secret, {
      ...old,
      envVars: [...old.envVars.filter((e) => e.name !== name), { name, value }],
    });
  }
  return secrets;
}

/** Every value of a secret that the log redaction must hide: env values and file contents. */
export function secretValues(secret: Secret): string[] {
  const values = secret.envVars.map((e) => e.value);
  for (const file of secret.files) {
    try {
      values.push(decodeBase64Text(file.content));
    } catch {
      values.push(file.content);
    }
  }
  return values.filter((v) => v !== "");
}
