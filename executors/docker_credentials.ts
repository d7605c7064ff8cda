/**
 * Image pull credentials of a container job (SEMAPHORE_COMPAT.md §10.3, DECISIONS.md 10): the
 * login strategy named by `DOCKER_CREDENTIAL_TYPE` (§4.3), the `docker login` line the original
 * shows for it in the job log, and the registry credentials it yields, `AWS_ECR` through the
 * host's `aws` CLI. The credentials are checked with the daemon and used for pulls by the
 * executor (`docker.ts`); this module talks to no daemon.
 *
 * @module
 */

import type { EnvVar, ImagePullCredentials } from "../lib/engine/job_request_types.ts";
import type { CommandLog } from "../lib/engine/command_log.ts";
import { decodeBase64Text } from "../lib/util/base64.ts";
import { findJobEnvVar } from "../lib/engine/job_request_values.ts";
import { errorMessage } from "../lib/util/errors.ts";
import { parseImageReference, type RegistryAuth } from "./docker_api.ts";

/** The login strategies of `DOCKER_CREDENTIAL_TYPE` (§4.3). */
type LoginKind = "DockerHub" | "GenericDocker" | "AWS_ECR" | "GCR";

const LOGIN_TITLES: Record<LoginKind, string> = {
  DockerHub: "DockerHub",
  GenericDocker: "Docker",
  AWS_ECR: "ECR",
  GCR: "GCR",
};

const LOGIN_COMMANDS: Record<Exclude<LoginKind, "AWS_ECR">, string> = {
  DockerHub:
    "echo $DOCKERHUB_PASSWORD | docker login --username $DOCKERHUB_USERNAME --password-stdin",
  GenericDocker: 'docker login -u "$DOCKER_USERNAME" -p "$DOCKER_PASSWORD" $DOCKER_URL',
  GCR:
    "cat /tmp/gcr/keyfile.json | docker login -u _json_key --password-stdin https://$GCR_HOSTNAME",
};

/** Options of {@linkcode resolveRegistryAuth}. */
export interface ResolveRegistryAuthOptions {
  /** The environment of the `aws` CLI (its `PATH` and `HOME` also go with the credentials). */
  readonly hostEnv: Readonly<Record<string, string>>;
  /** The `aws` CLI used for `AWS_ECR` credentials. */
  readonly awsCommand: string;
  /** Stops a running `aws` command. */
  readonly signal: AbortSignal;
}

/**
 * Turns one set of image pull credentials into registry credentials, writing the lines of
 * `Setting up image pull credentials` that come before the daemon's answer: `Setting up
 * credentials for <title>`, then the login command the original would run, or what failed.
 *
 * @returns the credentials, or `undefined` when they cannot be had (the log says why).
 */
export async function resolveRegistryAuth(
  log: CommandLog,
  credentials: ImagePullCredentials,
  options: ResolveRegistryAuthOptions,
): Promise<RegistryAuth | undefined> {
  let kind: LoginKind;
  try {
    kind = resolveLoginKind(credentials.env_vars);
  } catch (error) {
    log.text(`Failed to resolve docker login strategy: ${errorMessage(error)}\n`);
    return undefined;
  }
  log.text(`Setting up credentials for ${LOGIN_TITLES[kind]}\n`);
  const env = new Map<string, string>();
  for (const v of credentials.env_vars) {
    try {
      env.set(v.name, decodeBase64Text(v.value));
    } catch {
      log.text(`Failed to decode ${v.name}\n`);
      return undefined;
    }
  }
  if (kind === "AWS_ECR") return await ecrLogin(log, env, options);
  log.text(`${LOGIN_COMMANDS[kind]}\n`);
  if (kind === "DockerHub") {
    return {
      username: env.get("DOCKERHUB_USERNAME") ?? "",
      password: env.get("DOCKERHUB_PASSWORD") ?? "",
      serveraddress: "https://index.docker.io/v1/",
    };
  }
  if (kind === "GenericDocker") {
    return {
      username: env.get("DOCKER_USERNAME") ?? "",
      password: env.get("DOCKER_PASSWORD") ?? "",
      serveraddress: env.get("DOCKER_URL") ?? "",
    };
  }
  const key = credentials.files.find((f) => f.path === "/tmp/gcr/keyfile.json") ??
    credentials.files[0];
  let password = "";
  try {
    password = key ? decodeBase64Text(key.content) : "";
  } catch {
    log.text("Failed to decode the content of the file.\n");
    return undefined;
  }
  return {
    username: "_json_key",
    password,
    serveraddress: `https://${env.get("GCR_HOSTNAME") ?? ""}`,
  };
}

/** The credentials given for an image's registry, if any. */
export function findRegistryAuth(
  auths: readonly RegistryAuth[],
  image: string,
): RegistryAuth | undefined {
  const registry = parseImageReference(image).registry.toLowerCase();
  return auths.find((auth) => registryHost(auth.serveraddress || "docker.io") === registry);
}

/**
 * Picks the login strategy from the base64 `DOCKER_CREDENTIAL_TYPE` (§4.3).
 *
 * @throws {Error} `DOCKER_CREDENTIAL_TYPE not set` or `unknown DOCKER_CREDENTIAL_TYPE: '<v>'`.
 */
function resolveLoginKind(envVars: readonly EnvVar[]): LoginKind {
  const value = findJobEnvVar(envVars, "DOCKER_CREDENTIAL_TYPE");
  if (value === undefined) throw new Error("DOCKER_CREDENTIAL_TYPE not set");
  if (
    value === "DockerHub" || value === "GenericDocker" || value === "AWS_ECR" || value === "GCR"
  ) {
    return value;
  }
  throw new Error(`unknown DOCKER_CREDENTIAL_TYPE: '${value}'`);
}

/** The longest one `aws` command may run (it asks AWS over the network): 2 minutes. */
const AWS_CLI_TIMEOUT_MS = 120_000;

/** `AWS_ECR`: a password from `aws ecr get-login-password`, as the original's v2 path. */
async function ecrLogin(
  log: CommandLog,
  env: ReadonlyMap<string, string>,
  options: ResolveRegistryAuthOptions,
): Promise<RegistryAuth | undefined> {
  const { hostEnv: base, awsCommand, signal } = options;
  const credentialEnv: Record<string, string> = {
    ...(base.PATH ? { PATH: base.PATH } : {}),
    ...(base.HOME ? { HOME: base.HOME } : {}),
    ...Object.fromEntries(env),
  };
  const aws = async (args: string[], withCredentials: boolean) => {
    const deadline = AbortSignal.timeout(AWS_CLI_TIMEOUT_MS);
    try {
      const output = await new Deno.Command(awsCommand, {
        args,
        env: withCredentials ? credentialEnv : { ...base },
        clearEnv: true,
        stdin: "null",
        signal: AbortSignal.any([signal, deadline]),
      }).output();
      const decoder = new TextDecoder();
      return {
        ok: output.success,
        stdout: decoder.decode(output.stdout).trim(),
        stderr: decoder.decode(output.stderr).trim(),
      };
    } catch (error) {
      if (deadline.aborted && !signal.aborted) {
        throw new Error(`aws ${args.join(" ")} did not finish within 2m0s`);
      }
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(
          `the AWS CLI ('${awsCommand}') is not installed on the agent's host; ` +
            "AWS_ECR image pull credentials need it",
        );
      }
      throw error;
    }
  };
  const region = env.get("AWS_REGION") ?? "";
  let account = env.get("AWS_ACCOUNT_ID") ?? "";
  try {
    const version = await aws(["--version"], false);
    const text = `${version.stdout}\n${version.stderr}`;
    if (!version.ok || !/aws-cli\/\d/.test(text)) {
      throw new Error(`aws --version failed: ${text.trim()}`);
    }
    if (account === "") {
      const identity = await aws(
        ["sts", "get-caller-identity", "--query", "Account", "--output", "text"],
        true,
      );
      if (!identity.ok) throw new Error(identity.stderr || identity.stdout);
      account = identity.stdout;
    }
  } catch (error) {
    log.text(`Failed to determine docker login command: ${errorMessage(error)}\n`);
    return undefined;
  }
  const server = `${account}.dkr.ecr.${region}.amazonaws.com`;
  log.text(
    "aws ecr get-login-password --region $AWS_REGION | docker login --username AWS " +
      `--password-stdin ${account}.dkr.ecr.$AWS_REGION.amazonaws.com\n`,
  );
  try {
    const password = await aws(["ecr", "get-login-password", "--region", region], true);
    if (!password.ok) {
      for (const line of (password.stderr || password.stdout).split("\n")) log.text(`${line}\n`);
      return undefined;
    }
    return { username: "AWS", password: password.stdout, serveraddress: server };
  } catch (error) {
    log.text(`${errorMessage(error)}\n`);
    return undefined;
  }
}

/** Registry hosts compared the way credentials name them (`https://x/v1/` → `x`). */
function registryHost(address: string): string {
  const host = address.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "").toLowerCase();
  return ["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"].includes(host)
    ? "docker.io"
    : host;
}
