/**
 * What `agent run` of a job file loads once the job's shell is on its way (`local_run.ts`): the
 * request parser (with the YAML package), the job engine, the executors, the live printer, the
 * agent log, the callbacks. One `import()` of this module loads them while the shell logs in;
 * until then `agent run` has loaded only what reading the file and starting the shell take.
 *
 * @module
 */

export { parseJobRequestFile } from "../engine/job_request.ts";
export { Job } from "../engine/job.ts";
export { formatUsage } from "../engine/resource_usage.ts";
export {
  cleanUpAfterCrashedAgents,
  createExecutor,
  logJobIsolation,
} from "../../executors/for_job.ts";
export { createLivePrinter } from "./live_printer.ts";
export { agentLogFromEnv } from "../util/agent_log.ts";
export { sendFinishedCallback, sendTeardownFinishedCallback } from "../reporting/callbacks.ts";
