/**
 * Small helpers of `agent run PIPELINE.yml` for values from the command line and the terminal:
 * output writers, paths, `NAME=VALUE` lists, `--env-file`, `-s NAME:VAR[=VALUE]`.
 *
 * @module
 */

import type { HostEnvVar } from "../../engine/executor.ts";
import { errorMessage } from "../../util/errors.ts";
import { PipelineError } from "./schema.ts";

/** Writes text to a file descriptor; once the reader is gone (a closed pipe), drops it. */
export function writer(file: { writeSync(p: Uint8Array): number }): (t: string) => void {
  const encoder = new TextEncoder();
  let closed = false;
  return (text) => {
    if (closed) return;
    const bytes = encoder.encode(text);
    let written = 0;
    try {
      while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
    } catch {
      closed = true; // e.g. `agent run | head`: the rest of the output has no reader
    }
  };
}

export function absolute(path: string): string {
  if (path.startsWith("/")) return path;
  return `${Deno.cwd()}/${path}`.replace(/\/\.\//g, "/");
}

export function realDir(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

export function parseEnvPairs(pairs: readonly string[], flag: string): HostEnvVar[] {
  return pairs.map((pair) => {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new PipelineError(`${flag}: expected NAME=VALUE, found '${pair}'`);
    return { name: pair.slice(0, eq), value: pair.slice(eq + 1) };
  });
}

export function readEnvFile(path: string): HostEnvVar[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new PipelineError(`--env-file: cannot read '${path}': ${errorMessage(error)}`);
  }
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  return parseEnvPairs(lines.map((l) => l.replace(/^export\s+/, "")), `--env-file ${path}`);
}

/** Reads one line from the terminal without echoing it (a secret's value). */
function readHidden(question: string): string | undefined {
  const encoder = new TextEncoder();
  Deno.stderr.writeSync(encoder.encode(question));
  const bytes: number[] = [];
  const buffer = new Uint8Array(1);
  Deno.stdin.setRaw(true);
  try {
    for (;;) {
      if (Deno.stdin.readSync(buffer) !== 1) return undefined;
      const byte = buffer[0];
      if (byte === 3) return undefined; // Ctrl-C
      if (byte === 13 || byte === 10) break;
      if (byte === 127 || byte === 8) bytes.pop();
      else bytes.push(byte);
    }
  } finally {
    Deno.stdin.setRaw(false);
    Deno.stderr.writeSync(encoder.encode("\n"));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** `-s NAME:VAR[=VALUE]`: no value → the environment (a prompt needs a terminal). */
export function secretOverrides(specs: readonly string[]) {
  return specs.map((spec) => {
    const m = /^([^:]+):([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/s.exec(spec);
    if (!m) throw new PipelineError(`--secret: expected NAME:VAR[=VALUE], found '${spec}'`);
    let value: string | undefined = m[3];
    if (value === undefined) {
      value = Deno.env.get(m[2]);
      if (value === undefined && Deno.stdin.isTerminal()) {
        value = readHidden(`Value of ${m[2]} for secret '${m[1]}': `);
      }
      if (value === undefined) {
        throw new PipelineError(`--secret ${spec}: ${m[2]} is not set in the environment`);
      }
    }
    return { secret: m[1], name: m[2], value: value as string };
  });
}
