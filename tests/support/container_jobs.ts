/**
 * Container-job requests for tests of the container executor and its leftovers: a main
 * container of the test images under a name of its own, and the check that Docker holds
 * nothing of a job.
 *
 * @module
 */

import assert from "node:assert/strict";
import type {
  Command,
  Container,
  ImagePullCredentials,
  JobRequest,
} from "../../lib/engine/job_request_types.ts";
import { DockerClient } from "../../executors/docker_api.ts";
import { JOB_LABEL } from "../../executors/docker_leftovers.ts";
import { TEST_IMAGES } from "./test_images.ts";

/**
 * A main container name of its own: container names are global on the daemon, and other test
 * processes may run container jobs at the same time.
 */
export function mainName(prefix = "main"): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

/** A compose container with nothing but a name and an image unless `extra` says more. */
export function container(name: string, image: string, extra: Partial<Container> = {}): Container {
  return { name, image, command: "", entrypoint: "", user: "", env_vars: [], ...extra };
}

/** Commands without aliases. */
export function commands(...directives: string[]): Command[] {
  return directives.map((directive) => ({ directive, alias: "" }));
}

/** What {@linkcode containerRequest} takes besides request fields. */
export type ContainerRequestOverrides = Partial<JobRequest> & {
  containers?: Container[];
  credentials?: ImagePullCredentials[];
  hostSetup?: Command[];
};

/** A `dockercompose` job request; by default one bash main container and no commands. */
export function containerRequest(overrides: ContainerRequestOverrides = {}): JobRequest {
  const { containers, credentials, hostSetup, ...rest } = overrides;
  return {
    job_id: `test-${crypto.randomUUID()}`,
    executor: "dockercompose",
    compose: {
      containers: containers ?? [container(mainName(), TEST_IMAGES.bash)],
      image_pull_credentials: credentials ?? [],
      host_setup_commands: hostSetup ?? [],
    },
    commands: [],
    epilogue_always_commands: [],
    epilogue_on_pass_commands: [],
    epilogue_on_fail_commands: [],
    env_vars: [],
    files: [],
    ssh_public_keys: [],
    callbacks: { finished: "", teardown_finished: "", token: "" },
    logger: { method: "pull", url: "", token: "", max_size_in_bytes: 0 },
    ...rest,
  };
}

/** Fails if Docker still holds a container or network labelled with the job's id. */
export async function assertNothingLeft(jobId: string): Promise<void> {
  await using client = await DockerClient.connect();
  const filters = { label: [`${JOB_LABEL}=${jobId}`] };
  assert.deepEqual(await client.listContainers(filters), [], "containers left behind");
  assert.deepEqual(await client.listNetworks(filters), [], "networks left behind");
}
