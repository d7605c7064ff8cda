/**
 * Uploading the job log as a job artifact when the log closes (SEMAPHORE_COMPAT.md §6.7): the
 * policy (`never`, `always`, `when-trimmed`), the job's `SEMAPHORE_ARTIFACT_TOKEN` and
 * `SEMAPHORE_ORGANIZATION_URL`, the plain-text conversion, gzip above the compression threshold,
 * and `artifact push job <file> -d agent/job_logs.txt[.gz]` run on the agent host. Every failure
 * is logged and ends the upload; nothing here throws. The caller decides what "trimmed" means
 * (serve: log size ≥ `max_size_in_bytes`; start: the log sink answered 422).
 *
 * @module
 */

import type { EventLog } from "../engine/event_log.ts";
import type { EnvVar } from "../engine/job_request_types.ts";
import type { Logger } from "../util/agent_log.ts";
import { gzipFile, writePlainTextLog } from "./plain_text_log.ts";
import { findJobEnvVar } from "../engine/job_request_values.ts";
import { scrubbedEnvironment } from "../engine/agent_environment.ts";
import { after, formatGoDuration } from "../util/delay.ts";

/** When the job log is uploaded as an artifact. */
export type UploadJobLogsPolicy = "never" | "always" | "when-trimmed";

/** The job env var that chooses the policy in hosted mode (base64 like every job env var). */
export const UPLOAD_JOB_LOGS_ENV = "SEMAPHORE_AGENT_UPLOAD_JOB_LOGS";

/**
 * The longest `artifact push` may take: 10 minutes (then it is killed, the upload fails and
 * the teardown goes on).
 */
export const ARTIFACT_PUSH_TIMEOUT_MS = 600_000;

/** The most of the artifact CLI's output kept for the agent log. */
const MAX_ARTIFACT_OUTPUT_BYTES = 64 * 1024;

/** Default compression threshold: 100 MiB. */
export const DEFAULT_COMPRESSION_SIZE = 104_857_600;

const MIN_COMPRESSION_SIZE = 1_048_576;
const MAX_COMPRESSION_SIZE = 1_073_741_824;

/** Returns `value` as a policy, or `undefined` if it is not one of the three names. */
export function parseUploadPolicy(value: string | undefined): UploadJobLogsPolicy | undefined {
  return value === "never" || value === "always" || value === "when-trimmed" ? value : undefined;
}

/** A job env var's decoded value; `undefined` when it is missing or not base64. */
function jobEnvValue(envVars: readonly EnvVar[], name: string): string | undefined {
  try {
    return findJobEnvVar(envVars, name);
  } catch {
    return undefined;
  }
}

/** The hosted policy: the job's `SEMAPHORE_AGENT_UPLOAD_JOB_LOGS`; missing or invalid is `never`. */
export function uploadPolicyFromJobEnv(envVars: readonly EnvVar[]): UploadJobLogsPolicy {
  return parseUploadPolicy(jobEnvValue(envVars, UPLOAD_JOB_LOGS_ENV)) ?? "never";
}

/**
 * The compression threshold from `$SEMAPHORE_AGENT_LOGS_COMPRESSION_SIZE`: an integer within
 * [1 MiB, 1 GiB], otherwise 100 MiB.
 */
export function compressionThreshold(value: string | undefined): number {
  if (value === undefined || !/^[+-]?\d+$/.test(value)) return DEFAULT_COMPRESSION_SIZE;
  const size = Number.parseInt(value, 10);
  return size >= MIN_COMPRESSION_SIZE && size <= MAX_COMPRESSION_SIZE
    ? size
    : DEFAULT_COMPRESSION_SIZE;
}

/** Options of {@linkcode uploadJobLogArtifact}. */
export interface ArtifactUploadOptions {
  /** The job log; must still exist on disk (closed is fine). */
  readonly log: EventLog;
  readonly jobId: string;
  /** The job's env vars, values base64 (token and organization URL come from here). */
  readonly envVars: readonly EnvVar[];
  readonly policy: UploadJobLogsPolicy;
  readonly trimmed: boolean;
  readonly logger: Logger;
  /** The agent's environment, passed to `artifact`. @default Deno.env.toObject() */
  readonly env?: Readonly<Record<string, string>>;
  /** Where the plain-text copy is written. @default the OS temp dir */
  readonly dir?: string;
  /** How long `artifact push` may run before it is killed. @default ARTIFACT_PUSH_TIMEOUT_MS */
  readonly timeoutMs?: number;
}

/** What became of an upload. */
export type ArtifactUploadOutcome =
  | { readonly state: "uploaded"; readonly destination: string }
  | { readonly state: "skipped"; readonly reason: string }
  | { readonly state: "failed"; readonly error: string };

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const info = await Deno.stat(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Finds `name` on `PATH` like `exec.LookPath`. */
async function lookPath(name: string, pathVar: string | undefined): Promise<string | undefined> {
  for (const dir of (pathVar ?? "").split(":")) {
    const candidate = `${dir === "" ? "." : dir}/${name}`;
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/** Reads a stream to its end, keeping its first `max` bytes as text. */
async function collectOutput(stream: ReadableStream<Uint8Array>, max: number): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  let kept = 0;
  for await (const chunk of stream) {
    if (kept >= max) continue; // read on (the child must not block) but keep nothing
    const part = chunk.subarray(0, max - kept);
    kept += part.length;
    text += decoder.decode(part, { stream: true });
  }
  return text + decoder.decode();
}

/**
 * Runs the artifact CLI with a deadline: SIGKILL once it is over.
 *
 * @returns its exit code and (the first 64 KiB of) its output, or `timedOut`.
 */
async function runArtifact(
  command: string,
  options: Deno.CommandOptions,
  timeoutMs: number,
): Promise<{ code: number; text: string; timedOut: boolean }> {
  const child = new Deno.Command(command, {
    ...options,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = after(timeoutMs, () => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  });
  try {
    const [stdout, stderr, status] = await Promise.all([
      collectOutput(child.stdout, MAX_ARTIFACT_OUTPUT_BYTES),
      collectOutput(child.stderr, MAX_ARTIFACT_OUTPUT_BYTES),
      child.status,
    ]);
    return { code: status.code, text: stdout + stderr, timedOut };
  } finally {
    timer.cancel();
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Uploads the job log as `agent/job_logs.txt` (or `.txt.gz`) when the policy asks for it.
 * Never throws; every outcome is logged.
 */
export async function uploadJobLogArtifact(
  options: ArtifactUploadOptions,
): Promise<ArtifactUploadOutcome> {
  const {
    log,
    jobId,
    envVars,
    policy,
    trimmed,
    logger,
    dir,
    timeoutMs = ARTIFACT_PUSH_TIMEOUT_MS,
  } = options;
  const skip = (reason: string, error = false): ArtifactUploadOutcome => {
    if (error) logger.error(reason);
    else logger.info(reason);
    return { state: "skipped", reason };
  };
  if (policy === "never") {
    return skip("upload-job-logs=never - not uploading job logs as job artifact.");
  }
  if (policy === "when-trimmed" && !trimmed) {
    return skip(
      "upload-job-logs=when-trimmed - logs were not trimmed, not uploading job logs as job artifact.",
    );
  }
  const token = jobEnvValue(envVars, "SEMAPHORE_ARTIFACT_TOKEN");
  if (!token) {
    return skip(
      "SEMAPHORE_ARTIFACT_TOKEN is not set - not uploading job logs as job artifact.",
      true,
    );
  }
  const organizationUrl = jobEnvValue(envVars, "SEMAPHORE_ORGANIZATION_URL");
  if (!organizationUrl) {
    return skip(
      "SEMAPHORE_ORGANIZATION_URL is not set - not uploading job logs as job artifact.",
      true,
    );
  }
  const agentEnv = options.env ?? Deno.env.toObject();
  const artifact = await lookPath("artifact", agentEnv.PATH);
  if (!artifact) {
    return skip(
      "artifact CLI is not available on PATH - not uploading job logs as job artifact.",
      true,
    );
  }

  logger.info(`Uploading job logs as artifact (upload-job-logs=${policy}, trimmed=${trimmed})...`);
  let file: string;
  try {
    file = await writePlainTextLog(log, { dir });
  } catch (error) {
    logger.error(`Error converting job log "${log.path}" to plain text: ${message(error)}`);
    return { state: "failed", error: message(error) };
  }
  try {
    const size = (await Deno.stat(file)).size;
    if (size >= compressionThreshold(agentEnv.SEMAPHORE_AGENT_LOGS_COMPRESSION_SIZE)) {
      try {
        file = await gzipFile(file);
      } catch (error) {
        logger.error(`Error compressing "${file}" - uploading it uncompressed: ${message(error)}`);
      }
    }
    const destination = file.endsWith(".gz") ? "agent/job_logs.txt.gz" : "agent/job_logs.txt";
    // The agent's own configuration (secrets above all) is not the artifact CLI's business.
    const env = scrubbedEnvironment(agentEnv);
    env.SEMAPHORE_ARTIFACT_TOKEN = token;
    env.SEMAPHORE_JOB_ID = jobId;
    env.SEMAPHORE_ORGANIZATION_URL = organizationUrl;
    const output = await runArtifact(artifact, {
      args: ["push", "job", file, "-d", destination],
      env,
      clearEnv: true,
    }, timeoutMs);
    if (output.timedOut) {
      const error = `artifact did not finish within ${formatGoDuration(timeoutMs)} - killed it`;
      logger.error(`Error uploading job logs as artifact: ${error}`);
      return { state: "failed", error };
    }
    if (output.code !== 0) {
      const error = `artifact exited with code ${output.code}`;
      logger.error(`Error uploading job logs as artifact: ${error}, ${output.text.trim()}`);
      return { state: "failed", error };
    }
    logger.info("Successfully uploaded job logs as artifact.");
    return { state: "uploaded", destination };
  } catch (error) {
    logger.error(`Error uploading job logs as artifact: ${message(error)}`);
    return { state: "failed", error: message(error) };
  } finally {
    await Deno.remove(file).catch(() => {});
  }
}
