/**
 * The options of `agent run PIPELINE.yml` (PIPELINES.md §6.2), as `main.ts` hands them over, and
 * what a promoted pipeline inherits. Types only.
 *
 * @module
 */

import type { GitFlags } from "./git_facts.ts";
import type { Selection } from "./plan.ts";
import type { JobLimits } from "../../engine/executor.ts";

/** Options of {@linkcode runPipelineFile}: the pipeline flags of `agent run`. */
export interface RunPipelineOptions extends GitFlags, Selection {
  /** The pipeline file (relative to the current directory). */
  readonly path: string;
  /** `-C`: the repository root. @default the file's repository */
  readonly directory?: string;
  /** `--job-memory-limit`, `--job-cpu-limit`, `--job-pids-limit` for every job. @default none */
  readonly limits?: JobLimits;
  /** `--redacted-vars`, resolved by `redactionPatterns()`. @default the default patterns */
  readonly redactedVars?: readonly string[];
  readonly list?: boolean;
  /** `-w`: run again after every change in the repository. */
  readonly watch?: boolean;
  /** `--promote NAME` (repeatable): run these promotions after the pipeline, chains followed. */
  readonly promote?: readonly string[];
  /** `--auto-promote`: run every promotion whose condition holds after the pipeline. */
  readonly autoPromote?: boolean;
  /** `--param NAME=VALUE`: promotion parameters. */
  readonly params?: readonly string[];
  /** Set when this run is a promotion of another pipeline (internal). */
  readonly promotion?: PromotionContext;
  /** `-P OS_IMAGE=IMAGE` (repeatable; `*=IMAGE` for every VM job). */
  readonly images?: readonly string[];
  /** `-g`: the block graph as text, or `dot`. */
  readonly graph?: "text" | "dot";
  /** `--condition EXPR`: print its value and exit. */
  readonly condition?: string;
  readonly dryRun?: boolean;
  readonly printRequests?: string;
  readonly secretFiles?: readonly string[];
  readonly secretsDir?: string;
  /** `-s NAME:VAR[=VALUE]`. */
  readonly secrets?: readonly string[];
  readonly allowMissingSecrets?: boolean;
  readonly insecureSecrets?: boolean;
  readonly allowHostPaths?: boolean;
  readonly env?: readonly string[];
  readonly envFile?: string;
  /** `--jobs N`. @default CPUs */
  readonly concurrency?: number;
  readonly failFast?: boolean;
  readonly noTimeouts?: boolean;
  readonly bind?: boolean;
  readonly useGitignore?: boolean;
  readonly cacheDir?: string;
  readonly noCache?: boolean;
  readonly artifactsDir?: string;
  readonly keep?: boolean;
  readonly userProfile?: boolean;
  readonly allowSudo?: boolean;
  readonly strictVersions?: boolean;
  /** `--toolbox-passthrough`: a real `test-results` from the PATH instead of the local one. */
  readonly toolboxPassthrough?: boolean;
  readonly lenient?: boolean;
  readonly logDir?: string;
  readonly quiet?: boolean;
  /** `--json`: one JSON object per line on stdout (job events tagged with block and job). */
  readonly json?: boolean;
  /** `-v`: the agent's own log at info level on stderr. */
  readonly verbose?: boolean;
  readonly project?: string;
  readonly orgUrl?: string;
  /** `--log-format`: text or json. @default SEMAPHORE_AGENT_LOG_FORMAT, else text */
  readonly logFormat?: string;
  /** Where output goes. @default stdout */
  readonly write?: (text: string) => void;
  /** Where notices and warnings go. @default stderr */
  readonly writeErr?: (text: string) => void;
  /** @default stdout is a terminal and NO_COLOR unset */
  readonly color?: boolean;
  /** The environment jobs start from (tests). @default the agent's, scrubbed */
  readonly baseEnv?: Readonly<Record<string, string>>;
}

/** What a promoted pipeline inherits from the one it follows. */
export interface PromotionContext {
  /** The pipeline text, parameters already substituted. */
  readonly text: string;
  readonly promotedBy: string;
  readonly artefactIds: readonly string[];
  readonly params: readonly (readonly [string, string])[];
  readonly workflowId: string;
  readonly workflowNumber: number;
  readonly depth: number;
}
