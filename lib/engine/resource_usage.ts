/**
 * How a job's resource usage (cgroup accounting, DECISIONS.md 23) is written for people: one
 * line in the agent log (`agent start`, `agent serve`) and the closing summary of `agent run`.
 * The event log never carries it.
 *
 * @module
 */

import type { ResourceUsage } from "./executor.ts";

/** What a job used, its wall time included. */
export interface JobUsage extends ResourceUsage {
  readonly wallSeconds: number;
}

/** `2 GiB`, `256 MiB`, `1.5 KiB`, `100 B`: binary units, at most one decimal. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = Number.isInteger(value) ? `${value}` : value.toFixed(1).replace(/\.0$/, "");
  return `${text} ${units[unit]}`;
}

function seconds(value: number): string {
  return `${value.toFixed(2)} s`;
}

/**
 * One line, figures the executor could not measure left out:
 * `CPU 1.02 s user, 0.10 s system; peak memory 210 MiB; peak processes 52; block IO 0 B read,
 * 4 KiB written; wall 3.21 s`.
 */
export function formatUsage(usage: JobUsage): string {
  const parts: string[] = [];
  const { cpuUserSeconds: user, cpuSystemSeconds: system } = usage;
  if (user !== undefined || system !== undefined) {
    parts.push(`CPU ${seconds(user ?? 0)} user, ${seconds(system ?? 0)} system`);
  }
  if (usage.peakMemoryBytes !== undefined) {
    parts.push(`peak memory ${formatBytes(usage.peakMemoryBytes)}`);
  }
  if (usage.peakProcesses !== undefined) parts.push(`peak processes ${usage.peakProcesses}`);
  if (usage.blockReadBytes !== undefined || usage.blockWriteBytes !== undefined) {
    parts.push(
      `block IO ${formatBytes(usage.blockReadBytes ?? 0)} read, ${
        formatBytes(usage.blockWriteBytes ?? 0)
      } written`,
    );
  }
  parts.push(`wall ${seconds(usage.wallSeconds)}`);
  return parts.join("; ");
}

/**
 * The usage of several cgroups together (a job's containers): times and bytes added up; the
 * peaks added up too, an upper bound of the job's peak (they need not have coincided).
 */
export function sumUsage(parts: readonly ResourceUsage[]): ResourceUsage | undefined {
  if (parts.length === 0) return undefined;
  const keys = [
    "cpuUserSeconds",
    "cpuSystemSeconds",
    "peakMemoryBytes",
    "peakProcesses",
    "blockReadBytes",
    "blockWriteBytes",
  ] as const;
  const out: { -readonly [K in keyof ResourceUsage]: ResourceUsage[K] } = {};
  for (const key of keys) {
    const values = parts.map((p) => p[key]).filter((v): v is number => v !== undefined);
    if (values.length > 0) out[key] = values.reduce((a, b) => a + b, 0);
  }
  return out;
}
