/**
 * The typed shape of a Semaphore job request (SEMAPHORE_COMPAT.md §4), shared by the parser
 * (`job_request.ts`), the job engine and the executors. Values stay as they arrive: env var
 * values and file contents are still base64; decoding happens where the original decodes them,
 * because a bad value fails a step of the job, not the request.
 *
 * @module
 */

/** One command of a job: shell text, shown in the log as `alias` when that is non-empty. */
export interface Command {
  readonly directive: string;
  readonly alias: string;
}

/** A job environment variable; `value` is base64 (standard alphabet, padded). */
export interface EnvVar {
  readonly name: string;
  readonly value: string;
}

/** A file to inject: `content` is base64, `mode` an octal string such as `0644`. */
export interface JobFile {
  readonly path: string;
  readonly content: string;
  readonly mode: string;
}

/** One container of a `dockercompose` job; the first one of the list is the main container. */
export interface Container {
  readonly name: string;
  readonly image: string;
  readonly command: string;
  readonly entrypoint: string;
  readonly user: string;
  readonly env_vars: readonly EnvVar[];
}

/** One entry of `compose.image_pull_credentials` (§4.3). */
export interface ImagePullCredentials {
  readonly env_vars: readonly EnvVar[];
  readonly files: readonly JobFile[];
}

/** The `compose` object of a job request (§4.3). */
export interface Compose {
  readonly containers: readonly Container[];
  readonly image_pull_credentials: readonly ImagePullCredentials[];
  readonly host_setup_commands: readonly Command[];
}

/** Where to report the end of a job that uses the pull logger (§4.4, §7.7). */
export interface Callbacks {
  readonly finished: string;
  readonly teardown_finished: string;
  readonly token: string;
}

/** How the job log leaves the agent (§4.5). `method` is `pull` or `push` after parsing. */
export interface LoggerConfig {
  readonly method: string;
  readonly url: string;
  readonly token: string;
  readonly max_size_in_bytes: number;
}

/** A whole job request with every field present (missing fields take zero values, §4). */
export interface JobRequest {
  readonly job_id: string;
  readonly executor: string;
  readonly compose: Compose;
  readonly commands: readonly Command[];
  readonly epilogue_always_commands: readonly Command[];
  readonly epilogue_on_pass_commands: readonly Command[];
  readonly epilogue_on_fail_commands: readonly Command[];
  readonly env_vars: readonly EnvVar[];
  readonly files: readonly JobFile[];
  readonly ssh_public_keys: readonly string[];
  readonly callbacks: Callbacks;
  readonly logger: LoggerConfig;
}

/**
 * The largest job file `agent run` reads: 16 MiB (a person's job file is kilobytes; reading
 * `/dev/zero` up to it keeps the agent under 100 MiB). Here rather than beside the parser, so
 * that reading a job file loads no YAML code.
 */
export const MAX_JOB_FILE_BYTES = 16 * 1024 * 1024;
