/**
 * What the agent says about its host at registration (SEMAPHORE_COMPAT.md §8.2): the OS name
 * (Linux: `PRETTY_NAME`, else `NAME`, from `/etc/os-release` alone — DECISIONS.md 12), the
 * architecture in Go's naming mapped as the original does, and the hostname.
 *
 * @module
 */

import { scrubbedEnvironment } from "../engine/agent_environment.ts";

/** Reads `PRETTY_NAME` (else `NAME`) from os-release text, quotes stripped; "" if neither. */
export function parseOsRelease(text: string): string {
  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) continue;
    let value = match[2].trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0]) {
      value = value.slice(1, -1);
    }
    values.set(match[1], value);
  }
  return values.get("PRETTY_NAME") || values.get("NAME") || "";
}

async function commandOutput(cmd: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(cmd, {
    args,
    env: scrubbedEnvironment(), // no secret of the agent's (DECISIONS.md 21)
    clearEnv: true,
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!output.success) throw new Error(`${cmd} ${args.join(" ")} exited ${output.code}`);
  return new TextDecoder().decode(output.stdout).trim();
}

/** The OS name sent at registration; "" when it cannot be found. */
export async function osName(osReleasePath = "/etc/os-release"): Promise<string> {
  try {
    switch (Deno.build.os) {
      case "linux":
        return parseOsRelease(await Deno.readTextFile(osReleasePath));
      case "darwin": {
        const parts = await Promise.all(
          ["-productName", "-productVersion", "-buildVersion"].map((flag) =>
            commandOutput("sw_vers", [flag])
          ),
        );
        return parts.join(" ");
      }
      case "windows": {
        const [major, minor, build] = Deno.osRelease().split(".");
        return `Windows ${major}.${minor ?? "0"} - Build ${build ?? ""}`;
      }
      default:
        return "";
    }
  } catch {
    return "";
  }
}

/** The architecture as the original names it: Go's `amd64` → `x86_64`, `386` → `x86`, `arm64`. */
export function archName(arch: string = Deno.build.arch): string {
  switch (arch) {
    case "x86_64":
      return "x86_64";
    case "aarch64":
      return "arm64";
    default:
      return arch;
  }
}

/** The host name, or "" when it cannot be read. */
export function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}
