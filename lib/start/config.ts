/**
 * The configuration of `agent start` (SEMAPHORE_COMPAT.md §3.1): its 25 keys and ours (the
 * metrics address, the log format, the three job limits of DECISIONS.md 23, and the
 * `redacted-vars` of DECISIONS.md 24), each a flag, a
 * `SEMAPHORE_AGENT_*` environment variable and a YAML config-file key, merged with the
 * original's precedence (explicit flag > environment > config file > default) and validated in
 * the original's order with its exact messages. The result is one frozen {@linkcode AgentConfig}.
 * This module reads files and the environment; it knows nothing of HTTP or jobs.
 *
 * @module
 */

import { parse as parseYaml } from "yaml";
import { UsageError } from "../util/errors.ts";
import type { HostEnvVar } from "../engine/executor.ts";
import type { FileInjection, JobLimits } from "../engine/executor.ts";
import { parseJobLimits } from "../engine/job_limits.ts";
import { type ListenAddress, parseListenAddress } from "../telemetry/listen_address.ts";
import { type LogFormat, parseLogFormat } from "../util/agent_log.ts";
import { redactionPatterns } from "../engine/redaction_patterns.ts";

/** Every configuration key of `agent start`, in the original's order (§3.1). */
export const CONFIG_KEYS = [
  "config-file",
  "name",
  "name-from-env",
  "endpoint",
  "token",
  "no-https",
  "shutdown-hook-path",
  "pre-job-hook-path",
  "post-job-hook-path",
  "disconnect-after-job",
  "job-id",
  "disconnect-after-idle-timeout",
  "env-vars",
  "files",
  "fail-on-missing-files",
  "upload-job-logs",
  "fail-on-pre-job-hook-error",
  "source-pre-job-hook",
  "interruption-grace-period",
  "kubernetes-executor",
  "kubernetes-pod-spec",
  "kubernetes-allowed-images",
  "kubernetes-pod-start-timeout",
  "kubernetes-labels",
  "kubernetes-default-image",
  "metrics-addr",
  "log-format",
  "job-memory-limit",
  "job-cpu-limit",
  "job-pids-limit",
  "redacted-vars",
] as const;

/** One configuration key of `agent start`. */
export type ConfigKey = typeof CONFIG_KEYS[number];

type KeyType = "string" | "bool" | "int" | "list";

const KEY_TYPES: Readonly<Record<ConfigKey, KeyType>> = {
  "config-file": "string",
  "name": "string",
  "name-from-env": "string",
  "endpoint": "string",
  "token": "string",
  "no-https": "bool",
  "shutdown-hook-path": "string",
  "pre-job-hook-path": "string",
  "post-job-hook-path": "string",
  "disconnect-after-job": "bool",
  "job-id": "string",
  "disconnect-after-idle-timeout": "int",
  "env-vars": "list",
  "files": "list",
  "fail-on-missing-files": "bool",
  "upload-job-logs": "string",
  "fail-on-pre-job-hook-error": "bool",
  "source-pre-job-hook": "bool",
  "interruption-grace-period": "int",
  "kubernetes-executor": "bool",
  "kubernetes-pod-spec": "string",
  "kubernetes-allowed-images": "list",
  "kubernetes-pod-start-timeout": "int",
  "kubernetes-labels": "list",
  "kubernetes-default-image": "string",
  "metrics-addr": "string",
  "log-format": "string",
  "job-memory-limit": "string",
  "job-cpu-limit": "string",
  "job-pids-limit": "string",
  "redacted-vars": "list",
};

/** The default of `redacted-vars`: not given, so the default patterns apply (not "none"). */
const NOT_GIVEN: readonly string[] = Object.freeze([]);

const DEFAULTS: Readonly<Record<ConfigKey, string | boolean | number | readonly string[]>> = {
  "config-file": "",
  "name": "",
  "name-from-env": "",
  "endpoint": "",
  "token": "",
  "no-https": false,
  "shutdown-hook-path": "",
  "pre-job-hook-path": "",
  "post-job-hook-path": "",
  "disconnect-after-job": false,
  "job-id": "",
  "disconnect-after-idle-timeout": 0,
  "env-vars": [],
  "files": [],
  "fail-on-missing-files": false,
  "upload-job-logs": "never",
  "fail-on-pre-job-hook-error": false,
  "source-pre-job-hook": false,
  "interruption-grace-period": 0,
  "kubernetes-executor": false,
  "kubernetes-pod-spec": "",
  "kubernetes-allowed-images": [],
  "kubernetes-pod-start-timeout": 300,
  "kubernetes-labels": [],
  "kubernetes-default-image": "",
  "metrics-addr": "",
  "log-format": "text",
  "job-memory-limit": "",
  "job-cpu-limit": "",
  "job-pids-limit": "",
  "redacted-vars": NOT_GIVEN,
};

/** The variable that sets the push logger's flush timeout in seconds (not one of the 25 keys). */
export const FLUSH_TIMEOUT_ENV = "SEMAPHORE_AGENT_LOGS_FLUSH_TIMEOUT";

/** When the job log is uploaded as the artifact `agent/job_logs.txt` (§6.7). */
export type UploadJobLogs = "never" | "always" | "when-trimmed";

const UPLOAD_JOB_LOGS: readonly UploadJobLogs[] = ["never", "always", "when-trimmed"];

/** Where the agent name came from (§3.1.6). */
export type AgentNameSource = "name" | "name-from-env" | "random";

/** The validated configuration of `agent start`. */
export interface AgentConfig {
  readonly configFile: string;
  /** The agent name sent at registration (random when none was configured). */
  readonly name: string;
  readonly nameSource: AgentNameSource;
  /** The name is a URL (pre-signed AWS STS request): the hub answers with the real name. */
  readonly nameIsUrl: boolean;
  readonly nameFromEnv: string;
  readonly endpoint: string;
  readonly token: string;
  readonly noHttps: boolean;
  readonly shutdownHookPath: string;
  readonly preJobHookPath: string;
  readonly postJobHookPath: string;
  readonly disconnectAfterJob: boolean;
  readonly jobId: string;
  readonly disconnectAfterIdleTimeout: number;
  readonly interruptionGracePeriod: number;
  readonly envVars: readonly HostEnvVar[];
  readonly files: readonly FileInjection[];
  readonly failOnMissingFiles: boolean;
  readonly uploadJobLogs: UploadJobLogs;
  readonly failOnPreJobHookError: boolean;
  readonly sourcePreJobHook: boolean;
  readonly kubernetesExecutor: boolean;
  readonly kubernetesPodSpec: string;
  readonly kubernetesAllowedImages: readonly string[];
  readonly kubernetesLabels: readonly HostEnvVar[];
  readonly kubernetesPodStartTimeout: number;
  readonly kubernetesDefaultImage: string;
  /** Name patterns of the variables whose values are redacted (empty: redaction is off). */
  readonly redactedVars: readonly string[];
  /** Push logger flush timeout in seconds, 1–900 (`SEMAPHORE_AGENT_LOGS_FLUSH_TIMEOUT`). */
  readonly logsFlushTimeoutSeconds: number;
  /** Where `/metrics`, `/healthz` and `/readyz` are served; undefined when off. */
  readonly metricsAddr: ListenAddress | undefined;
  /** The agent log's format. */
  readonly logFormat: LogFormat;
  /** `job-memory-limit`, `job-cpu-limit`, `job-pids-limit` (none by default). */
  readonly jobLimits: JobLimits;
}

/** Options of {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /** Reads an environment variable. @default Deno.env.get */
  readonly getEnv?: (name: string) => string | undefined;
  /** Produces random bytes for a random agent name. @default crypto.getRandomValues */
  readonly randomBytes?: (n: number) => Uint8Array;
}

/** The `SEMAPHORE_AGENT_*` variable of a key: prefix, upper case, `-` → `_` (§3.1.2). */
export function envVarName(key: ConfigKey): string {
  return `SEMAPHORE_AGENT_${key.toUpperCase().replaceAll("-", "_")}`;
}

function fatal(message: string): never {
  throw new UsageError(message, { exitCode: 1 });
}

/** Go `strconv.ParseBool`. */
export function parseGoBool(value: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(value)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(value)) return false;
  return undefined;
}

type Value = string | boolean | number | readonly string[];

function fromEnv(key: ConfigKey, raw: string): Value {
  const name = envVarName(key);
  switch (KEY_TYPES[key]) {
    case "string":
      return raw;
    case "bool": {
      const value = parseGoBool(raw.trim());
      if (value === undefined) fatal(`Cannot read ${name}: '${raw}' is not a boolean`);
      return value;
    }
    case "int": {
      if (!/^[+-]?\d+$/.test(raw.trim())) fatal(`Cannot read ${name}: '${raw}' is not an integer`);
      return Number.parseInt(raw.trim(), 10);
    }
    case "list":
      // viper/cast split an environment string on whitespace, not on commas (§3.1.2).
      return raw.split(/\s+/).filter((s) => s !== "");
  }
}

function fromYaml(key: ConfigKey, raw: unknown, path: string): Value {
  const bad = (what: string): never =>
    fatal(`Cannot read config file ${path}: '${key}' must be ${what}`);
  switch (KEY_TYPES[key]) {
    case "string":
      if (typeof raw === "string") return raw;
      if (typeof raw === "number" || typeof raw === "boolean") return String(raw);
      return bad("a string");
    case "bool":
      if (typeof raw === "boolean") return raw;
      if (typeof raw === "number") return raw !== 0;
      if (typeof raw === "string") return parseGoBool(raw.trim()) ?? bad("a boolean");
      return bad("a boolean");
    case "int":
      if (typeof raw === "number" && Number.isInteger(raw)) return raw;
      if (typeof raw === "string" && /^[+-]?\d+$/.test(raw.trim())) {
        return Number.parseInt(raw.trim(), 10);
      }
      return bad("an integer");
    case "list":
      if (Array.isArray(raw)) {
        return raw.map((item) =>
          typeof item === "string" || typeof item === "number" || typeof item === "boolean"
            ? String(item)
            : bad("a list of strings")
        );
      }
      if (typeof raw === "string") return raw.split(/\s+/).filter((s) => s !== "");
      return bad("a list of strings");
  }
}

function fromFlag(key: ConfigKey, raw: unknown): Value {
  const type = KEY_TYPES[key];
  if (type === "list" && Array.isArray(raw)) return raw.map(String);
  if (type === "bool" && typeof raw === "boolean") return raw;
  if (type === "int" && typeof raw === "number" && Number.isInteger(raw)) return raw;
  if (type === "string" && typeof raw === "string") return raw;
  throw new UsageError(`Cannot read flag --${key}: unexpected value ${JSON.stringify(raw)}`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** All keys of a YAML mapping, lower-cased, nested ones as `parent.child` (viper's AllKeys). */
function flattenKeys(map: Record<string, unknown>, prefix = ""): string[] {
  const keys: string[] = [];
  for (const [key, value] of Object.entries(map)) {
    const full = `${prefix}${key.toLowerCase()}`;
    if (isPlainObject(value) && Object.keys(value).length > 0) {
      keys.push(...flattenKeys(value, `${full}.`));
    } else {
      keys.push(full);
    }
  }
  return keys;
}

async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  const ext = path.includes(".") ? path.slice(path.lastIndexOf(".") + 1).toLowerCase() : "";
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      fatal(`Couldn't find config file ${path}: open ${path}: no such file or directory`);
    }
    fatal(`Error reading config file ${path}: ${(error as Error).message}`);
  }
  if (!["yaml", "yml", "json"].includes(ext)) {
    fatal(`Error reading config file ${path}: Unsupported Config Type "${ext}"`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (error) {
    fatal(
      `Error reading config file ${path}: ${(error as Error).message.split("\n")[0]}`,
    );
  }
  if (doc === null || doc === undefined) return {};
  if (!isPlainObject(doc)) {
    fatal(`Error reading config file ${path}: the top level must be a mapping of keys`);
  }
  return doc;
}

const URL_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;

/** Whether Go's `url.ParseRequestURI` accepts `name` (absolute URL or a path from `/`). */
function isRequestUri(name: string): boolean {
  if (name === "*" || name.startsWith("/")) return true;
  if (!URL_SCHEME.test(name)) return false;
  // Go refuses control characters in a URL.
  if ([...name].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) return false;
  const rest = name.slice(name.indexOf(":") + 1);
  if (rest.startsWith("//")) {
    try {
      new URL(name);
    } catch {
      return false;
    }
  }
  return true;
}

function validateName(name: string): void {
  if (isRequestUri(name)) return;
  const length = new TextEncoder().encode(name).length;
  if (length < 8 || length > 80) {
    fatal(
      `Agent name validation failed: name should have between 8 and 80 characters. ` +
        `'${name}' has ${length}`,
    );
  }
}

/** A random agent name: 15 random bytes in base64url, 20 characters (§3.1.6). */
export function randomAgentName(randomBytes?: (n: number) => Uint8Array): string {
  const bytes = randomBytes?.(15) ?? crypto.getRandomValues(new Uint8Array(15));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

function splitPairs(
  entries: readonly string[],
  separator: string,
  what: string,
): { name: string; value: string }[] {
  return entries.map((entry) => {
    const parts = entry.split(separator);
    if (parts.length !== 2) fatal(what.replace("<entry>", entry));
    return { name: parts[0], value: parts[1] };
  });
}

function readFlushTimeout(getEnv: (name: string) => string | undefined): number {
  const raw = getEnv(FLUSH_TIMEOUT_ENV);
  if (raw === undefined || raw === "") return 60;
  const value = /^\d+$/.test(raw.trim()) ? Number.parseInt(raw.trim(), 10) : NaN;
  if (!(value >= 1 && value <= 900)) {
    fatal(`Cannot read ${FLUSH_TIMEOUT_ENV}: '${raw}' must be between 1 and 900`);
  }
  return value;
}

/**
 * Builds the configuration of `agent start` from the flags given on the command line
 * (`explicitFlags`, keyed by flag name without `--`), the `SEMAPHORE_AGENT_*` environment and
 * the config file named by `--config-file`.
 *
 * @throws {UsageError} with exit code 1 and the original's message for a bad configuration.
 */
export async function loadConfig(
  explicitFlags: Readonly<Record<string, unknown>>,
  options: LoadConfigOptions = {},
): Promise<AgentConfig> {
  const { getEnv = (name: string) => Deno.env.get(name), randomBytes } = options;

  // The config file path comes from the flag only (§3.1.2: SEMAPHORE_AGENT_CONFIG_FILE is ignored).
  const configFile = typeof explicitFlags["config-file"] === "string"
    ? explicitFlags["config-file"]
    : "";
  const fileValues = configFile ? await readConfigFile(configFile) : {};

  // 1. Unknown keys, from the config file (flags and env vars only know valid keys).
  for (const key of flattenKeys(fileValues)) {
    if (!(CONFIG_KEYS as readonly string[]).includes(key)) {
      fatal(`Unrecognized option '${key}'. Exiting...`);
    }
  }

  const values = {} as Record<ConfigKey, Value>;
  for (const key of CONFIG_KEYS) {
    if (key in explicitFlags && explicitFlags[key] !== undefined) {
      values[key] = fromFlag(key, explicitFlags[key]);
      continue;
    }
    const env = key === "config-file" ? undefined : getEnv(envVarName(key));
    // viper treats an empty variable as unset: the file or the default applies.
    if (env !== undefined && env !== "") {
      values[key] = fromEnv(key, env);
      continue;
    }
    const lower = Object.keys(fileValues).find((k) => k.toLowerCase() === key);
    const raw = lower === undefined ? undefined : fileValues[lower];
    values[key] = raw === undefined || raw === null
      ? DEFAULTS[key]
      : fromYaml(key, raw, configFile);
  }
  const str = (key: ConfigKey) => values[key] as string;
  const bool = (key: ConfigKey) => values[key] as boolean;
  const int = (key: ConfigKey) => values[key] as number;
  const list = (key: ConfigKey) => values[key] as readonly string[];

  // 2.
  if (str("job-id") !== "" && !bool("disconnect-after-job")) {
    fatal("job-id can only be used if disconnect-after-job is also used. Exiting...");
  }
  // 3.
  const upload = str("upload-job-logs");
  if (!(UPLOAD_JOB_LOGS as readonly string[]).includes(upload)) {
    fatal(
      `Unsupported value '${upload}' for 'upload-job-logs'. ` +
        `Allowed values are: [never always when-trimmed]. Exiting...`,
    );
  }
  // 4., 5.
  if (str("endpoint") === "") fatal("Semaphore endpoint was not specified. Exiting...");
  if (str("token") === "") fatal("Agent registration token was not specified. Exiting...");
  // 6., 7.
  if (int("disconnect-after-idle-timeout") < 0) fatal("Idle timeout can't be negative. Exiting...");
  if (int("kubernetes-pod-start-timeout") < 0) {
    fatal("Kubernetes pod start timeout can't be negative. Exiting...");
  }
  // 8., 9., 10.
  const envVars = splitPairs(
    list("env-vars"),
    "=",
    "Error parsing --env-vars: <entry> is not a valid environment variable",
  );
  const files = splitPairs(
    list("files"),
    ":",
    "Error parsing --files: <entry> is not a valid file injection",
  ).map(({ name, value }) => ({ hostPath: name, destination: value }));
  const labels = splitPairs(
    list("kubernetes-labels"),
    "=",
    "Error parsing --kubernetes-labels: <entry> is not a valid label",
  );
  // 11. Agent name (§3.1.6).
  let name: string;
  let nameSource: AgentNameSource;
  if (str("name") !== "") {
    name = str("name");
    nameSource = "name";
    validateName(name);
  } else if (str("name-from-env") !== "") {
    name = getEnv(str("name-from-env")) ?? "";
    nameSource = "name-from-env";
    validateName(name);
  } else {
    name = randomAgentName(randomBytes);
    nameSource = "random";
  }
  // 12.
  for (const pattern of list("kubernetes-allowed-images")) {
    try {
      new RegExp(pattern);
    } catch (error) {
      fatal(`Error creating image validator: ${(error as Error).message}`);
    }
  }
  // Ours: the Kubernetes executor is not implemented; running jobs on the host instead would
  // surprise the operator who asked for pods.
  if (bool("kubernetes-executor")) {
    fatal(
      "Cannot start agent: kubernetes-executor is not supported by this agent. Exiting...",
    );
  }
  const logsFlushTimeoutSeconds = readFlushTimeout(getEnv);
  let metricsAddr: ListenAddress | undefined;
  let logFormat: LogFormat;
  try {
    metricsAddr = str("metrics-addr") === "" ? undefined : parseListenAddress(str("metrics-addr"));
    logFormat = parseLogFormat(str("log-format"));
  } catch (error) {
    fatal(`${(error as Error).message}. Exiting...`);
  }
  let jobLimits: JobLimits;
  try {
    jobLimits = parseJobLimits({
      memory: str("job-memory-limit"),
      cpu: str("job-cpu-limit"),
      pids: str("job-pids-limit"),
    }, (key) => key);
  } catch (error) {
    fatal(`Cannot read ${(error as Error).message}. Exiting...`);
  }
  let redactedVars: readonly string[];
  try {
    const given = list("redacted-vars");
    redactedVars = redactionPatterns(given === NOT_GIVEN ? undefined : given);
  } catch (error) {
    fatal(`Error parsing --redacted-vars: ${(error as Error).message}`);
  }

  return Object.freeze({
    configFile,
    name,
    nameSource,
    nameIsUrl: nameSource !== "random" && isRequestUri(name),
    nameFromEnv: str("name-from-env"),
    endpoint: str("endpoint"),
    token: str("token"),
    noHttps: bool("no-https"),
    shutdownHookPath: str("shutdown-hook-path"),
    preJobHookPath: str("pre-job-hook-path"),
    postJobHookPath: str("post-job-hook-path"),
    disconnectAfterJob: bool("disconnect-after-job"),
    jobId: str("job-id"),
    disconnectAfterIdleTimeout: int("disconnect-after-idle-timeout"),
    interruptionGracePeriod: int("interruption-grace-period"),
    envVars: Object.freeze(envVars.map((v) => Object.freeze(v))),
    files: Object.freeze(files.map((f) => Object.freeze(f))),
    failOnMissingFiles: bool("fail-on-missing-files"),
    uploadJobLogs: upload as UploadJobLogs,
    failOnPreJobHookError: bool("fail-on-pre-job-hook-error"),
    sourcePreJobHook: bool("source-pre-job-hook"),
    kubernetesExecutor: bool("kubernetes-executor"),
    kubernetesPodSpec: str("kubernetes-pod-spec"),
    kubernetesAllowedImages: Object.freeze([...list("kubernetes-allowed-images")]),
    kubernetesLabels: Object.freeze(labels.map((l) => Object.freeze(l))),
    kubernetesPodStartTimeout: int("kubernetes-pod-start-timeout"),
    kubernetesDefaultImage: str("kubernetes-default-image"),
    logsFlushTimeoutSeconds,
    metricsAddr: metricsAddr && Object.freeze(metricsAddr),
    logFormat,
    jobLimits: Object.freeze({ ...jobLimits }),
    redactedVars: Object.freeze([...redactedVars]),
  });
}
