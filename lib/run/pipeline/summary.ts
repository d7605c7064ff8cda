/**
 * What a person sees of a pipeline run (PIPELINES.md §6.2): job output prefixed with
 * `[Block / Job] ` when jobs run in parallel, and the closing summary table (block, job,
 * result, duration) with the pipeline result.
 *
 * @module
 */

/** Formats a duration as the live printer does. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)}s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes}m${Math.round((ms % 60_000) / 1000)}s`;
}

/** A writer that puts `prefix` before every line; `flush()` ends a partial last line. */
export interface PrefixedWriter {
  write(text: string): void;
  flush(): void;
}

/** Prefixes each complete line; a partial line waits for its end (or `flush()`). */
export function prefixedWriter(write: (text: string) => void, prefix: string): PrefixedWriter {
  let pending = "";
  return {
    write(text: string) {
      pending += text;
      const end = pending.lastIndexOf("\n");
      if (end === -1) return;
      const lines = pending.slice(0, end).split("\n");
      pending = pending.slice(end + 1);
      write(lines.map((l) => l === "" ? `${prefix.trimEnd()}\n` : `${prefix}${l}\n`).join(""));
    },
    flush() {
      if (pending !== "") write(`${prefix}${pending}\n`);
      pending = "";
    },
  };
}

/** One row of the summary. */
export interface SummaryRow {
  readonly block: string;
  readonly job: string;
  readonly result: string;
  readonly ms: number;
}

/** The summary table and the pipeline result line. */
export function formatSummary(
  rows: readonly SummaryRow[],
  pipeline: { result: string; reason: string; ms: number },
): string {
  const table = [
    ["Block", "Job", "Result", "Duration"],
    ...rows.map((r) => [
      r.block,
      r.job,
      r.result,
      r.result === "canceled" || r.result === "skipped" ? "-" : formatDuration(r.ms),
    ]),
  ];
  const widths = table[0].map((_, c) => Math.max(...table.map((r) => r[c].length)));
  let text = "\n" +
    table.map((r) =>
      r.map((cell, c) => c === r.length - 1 ? cell : cell.padEnd(widths[c])).join("  ")
    ).join("\n") + "\n";
  const reason = pipeline.reason ? ` (${pipeline.reason})` : "";
  text += `\nPipeline ${pipeline.result}${reason} in ${formatDuration(pipeline.ms)}\n`;
  return text;
}

/** A file-name-safe form of a block or job name. */
export function slug(name: string): string {
  return name.replace(/[^A-Za-z0-9._=-]+/g, "_").replace(/^_+|_+$/g, "") || "_";
}

/** `<nn>-<block>--<job>`, nn two digits from 01. */
export function jobFileStem(nn: number, block: string, job: string): string {
  return `${String(nn).padStart(2, "0")}-${slug(block)}--${slug(job)}`;
}
