/**
 * `agent run [FILE]`: tells a pipeline file from a job request by its shape (PIPELINES.md §6.2,
 * DECISIONS.md 25): a top-level mapping with a `blocks` key is a pipeline, anything else a job
 * request, which runs exactly as before (`local_run.ts`), unless `--print-requests` wrote it: its
 * `local_toolbox:` mark runs it in the pipeline run's sandbox HOME (`pipeline/replay.ts`). The
 * pipeline code is loaded only for a pipeline or a marked request, so running a job file stays as
 * light as it was.
 *
 * @module
 */

import { runJobFile } from "./local_run.ts";
import { redactionPatterns } from "../engine/redaction_patterns.ts";
import { errorMessage, UsageError } from "../util/errors.ts";
import { type JobLimitTexts, parseJobLimits } from "../engine/job_limits.ts";
import { BodyTooLargeError, readFileCapped } from "../util/capped_read.ts";
import { type JobRequest, MAX_JOB_FILE_BYTES } from "../engine/job_request_types.ts";
import type { RunPipelineOptions } from "./pipeline/run_pipeline.ts";

/** The default pipeline file, under `-C` or the current directory. */
export const DEFAULT_PIPELINE = ".semaphore/semaphore.yml";

/** Options of {@linkcode runFile}. */
export interface RunFileOptions {
  /** FILE, when given. */
  readonly path?: string;
  /** `--log-file` (job requests). */
  readonly logFile?: string;
  /** `--log-format`: the agent log's format on stderr (both kinds of file). */
  readonly logFormat?: string;
  /** `--job-memory-limit`, `--job-cpu-limit`, `--job-pids-limit` (both kinds of file). */
  readonly limits?: JobLimitTexts;
  /** `--redacted-vars` patterns as given (both kinds of file). @default the default patterns */
  readonly redactedVars?: readonly string[];
  /** Names of the pipeline-only flags given on the command line. */
  readonly pipelineFlags: readonly string[];
  /** The pipeline options (used when FILE is a pipeline). */
  readonly pipeline: Omit<RunPipelineOptions, "path">;
}

/**
 * The `local_toolbox:` key of a request `--print-requests` wrote (`pipeline/request_file.ts`),
 * at the start of a line: only then is the sandbox code loaded (`pipeline/replay.ts`).
 */
const REPLAY_MARK = /^local_toolbox[ \t]*:/m;

/** A `blocks:` key at the start of a line: a key of the top-level block mapping. */
const TOP_LEVEL_BLOCKS = /^(?:blocks|"blocks"|'blocks')[ \t]*:/m;

/**
 * Whether YAML text is a pipeline: a top-level mapping with a `blocks` key. A block mapping is
 * recognised without parsing (a job file is parsed once, by the job request reader); only a
 * flow mapping at the top (`{...}`) is parsed here, and only then is the YAML parser loaded
 * (`agent run` starts a job's shell before it loads the parser: `local_run.ts`).
 */
export async function isPipelineText(text: string): Promise<boolean> {
  if (TOP_LEVEL_BLOCKS.test(text)) return true;
  if (!/^\s*(?:#.*\n\s*|---\s*)*\{/.test(text)) return false;
  const { isMap, parseDocument } = await import("yaml");
  try {
    const doc = parseDocument(text, { prettyErrors: false });
    return isMap(doc.contents) && doc.contents.has("blocks");
  } catch {
    return false;
  }
}

/**
 * Runs FILE as a pipeline or as a job request and resolves with the exit code.
 *
 * @throws {UsageError} (exit 2) an invalid file, pipeline flags given with a job request.
 */
export async function runFile(options: RunFileOptions): Promise<number> {
  let path = options.path;
  if (path === undefined) {
    path = options.pipeline.directory
      ? `${options.pipeline.directory}/${DEFAULT_PIPELINE}`
      : DEFAULT_PIPELINE;
    try {
      Deno.statSync(path);
    } catch {
      throw new UsageError(
        `no FILE given and ${path} not found (give a pipeline or job file: agent run FILE)`,
      );
    }
  }
  let contents: Uint8Array | undefined;
  let text: string | undefined;
  try {
    // Capped: `agent run /dev/zero` must not read for ever (the job file reader says why).
    contents = readFileCapped(path, MAX_JOB_FILE_BYTES);
    text = new TextDecoder().decode(contents);
  } catch (error) {
    if (error instanceof BodyTooLargeError) {
      // Said here: reading it again to say it would double the memory a huge file takes.
      const { JobRequestError } = await import("../engine/job_request.ts");
      const tooLarge = new JobRequestError(
        `Cannot read job file: the file is larger than ${error.limit} bytes`,
        { file: path, cause: error },
      );
      throw new UsageError(tooLarge.message, { cause: tooLarge });
    }
    // unreadable: the job file path reports it as before
  }
  if (text !== undefined && await isPipelineText(text)) {
    if (options.logFile !== undefined) {
      throw new UsageError(`--log-file is for job files; for a pipeline use --log-dir DIR`);
    }
    let limits;
    try {
      limits = parseJobLimits(options.limits ?? {});
    } catch (error) {
      throw new UsageError(errorMessage(error));
    }
    let redactedVars;
    try {
      redactedVars = redactionPatterns(options.redactedVars);
    } catch (error) {
      throw new UsageError(`Cannot read --redacted-vars: ${errorMessage(error)}`);
    }
    const { runPipelineFile } = await import("./pipeline/run_pipeline.ts");
    return await runPipelineFile({ ...options.pipeline, path, limits, redactedVars });
  }
  if (options.pipelineFlags.length > 0) {
    throw new UsageError(
      `${path}: ${options.pipelineFlags.map((f) => `--${f}`).join(", ")} ` +
        `${options.pipelineFlags.length === 1 ? "is a pipeline flag" : "are pipeline flags"}, ` +
        "and this is a job request file",
    );
  }
  let sandbox;
  if (text !== undefined && REPLAY_MARK.test(text)) {
    const { readReplayMark, replaySandbox } = await import("./pipeline/replay.ts");
    const mark = readReplayMark(text, path);
    if (mark) sandbox = (request: JobRequest) => replaySandbox(mark, request);
  }
  return await runJobFile({
    path,
    contents,
    logFile: options.logFile,
    logFormat: options.logFormat,
    limits: options.limits,
    redactedVars: options.redactedVars,
    sandbox,
  });
}
