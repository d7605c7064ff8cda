/**
 * Job log events and their exact JSON-line encoding (SEMAPHORE_COMPAT.md §6.1): keys in the
 * original's order, Unix-second timestamps, and Go `encoding/json` escaping (`<`, `>`, `&`,
 * U+2028, U+2029 as `\uXXXX`; one U+FFFD per invalid UTF-8 byte).
 *
 * @module
 */

/** The result of a job. */
export type JobResult = "passed" | "failed" | "stopped";

/** `{"event":"job_started",...}` */
export interface JobStartedEvent {
  readonly event: "job_started";
  readonly timestamp: number;
}

/** `{"event":"cmd_started",...}` */
export interface CmdStartedEvent {
  readonly event: "cmd_started";
  readonly timestamp: number;
  readonly directive: string;
}

/** `{"event":"cmd_output",...}` */
export interface CmdOutputEvent {
  readonly event: "cmd_output";
  readonly timestamp: number;
  readonly output: string;
}

/** `{"event":"cmd_finished",...}` */
export interface CmdFinishedEvent {
  readonly event: "cmd_finished";
  readonly timestamp: number;
  readonly directive: string;
  readonly exit_code: number;
  readonly started_at: number;
  readonly finished_at: number;
}

/** `{"event":"job_finished",...}` */
export interface JobFinishedEvent {
  readonly event: "job_finished";
  readonly timestamp: number;
  readonly result: JobResult;
}

/** Any event of the job log. */
export type JobEvent =
  | JobStartedEvent
  | CmdStartedEvent
  | CmdOutputEvent
  | CmdFinishedEvent
  | JobFinishedEvent;

/** Where the job engine and the executors write events (the event log, a live printer, ...). */
export interface EventSink {
  /** Records one event; must not throw and must keep the order of calls. */
  write(event: JobEvent): void;
  /**
   * Back-pressure: a promise that settles once the sink has room again, or `undefined` when it
   * has room now (also when the method is absent). Before reading more of a command's output
   * the engine waits for it, so a slow disk slows the job's output down instead of growing the
   * sink's buffers.
   */
  ready?(): Promise<void> | undefined;
}

/** The current time in Unix seconds, as every event timestamp is written. */
export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

const GO_ESCAPES: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};
const GO_ESCAPED = /[<>&\u2028\u2029]/g;

/**
 * Stands for one invalid UTF-8 byte in decoded output. A lone low surrogate never comes out of
 * a valid decode, so it cannot be confused with a real U+FFFD, which Go writes raw while it
 * writes an invalid byte as the six characters `\ufffd`.
 */
export const INVALID_BYTE = "\udfff";

/** Encodes a string as a JSON string literal exactly as Go's `encoding/json` does. */
export function goJsonString(value: string): string {
  if (value.includes(INVALID_BYTE)) {
    return `"${
      value.split(INVALID_BYTE).map((part) => goJsonString(part).slice(1, -1)).join("\\ufffd")
    }"`;
  }
  const json = JSON.stringify(value);
  GO_ESCAPED.lastIndex = 0;
  return GO_ESCAPED.test(json) ? json.replace(GO_ESCAPED, (c) => GO_ESCAPES[c]) : json;
}

/**
 * Encodes one event as its JSON line, `\n` included.
 *
 * @example
 * ```ts
 * import { encodeEvent } from "./events.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   encodeEvent({ event: "cmd_output", timestamp: 1, output: "<b>\n" }),
 *   '{"event":"cmd_output","timestamp":1,"output":"\\u003cb\\u003e\\n"}\n',
 * );
 * ```
 */
export function encodeEvent(e: JobEvent): string {
  const head = `{"event":"${e.event}","timestamp":${e.timestamp}`;
  switch (e.event) {
    case "job_started":
      return `${head}}\n`;
    case "cmd_started":
      return `${head},"directive":${goJsonString(e.directive)}}\n`;
    case "cmd_output":
      return `${head},"output":${goJsonString(e.output)}}\n`;
    case "cmd_finished":
      return `${head},"directive":${goJsonString(e.directive)},"exit_code":${e.exit_code},` +
        `"started_at":${e.started_at},"finished_at":${e.finished_at}}\n`;
    case "job_finished":
      return `${head},"result":"${e.result}"}\n`;
  }
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Decodes bytes as UTF-8 the way Go's JSON encoder sees them: every byte that is not part of a
 * valid sequence becomes one {@linkcode INVALID_BYTE} (TextDecoder would merge a truncated
 * sequence into one U+FFFD), which {@linkcode goJsonString} writes as `\ufffd`.
 */
export function decodeUtf8PerByte(bytes: Uint8Array): string {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return decodeSlow(bytes);
  }
}

function sequenceLength(bytes: Uint8Array, i: number): number {
  const b0 = bytes[i];
  if (b0 < 0x80) return 1;
  let need: number, lo = 0x80, hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) need = 1;
  else if (b0 >= 0xe0 && b0 <= 0xef) {
    need = 2;
    if (b0 === 0xe0) lo = 0xa0;
    if (b0 === 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    need = 3;
    if (b0 === 0xf0) lo = 0x90;
    if (b0 === 0xf4) hi = 0x8f;
  } else return 0;
  if (i + need >= bytes.length) return 0; // truncated sequence
  const b1 = bytes[i + 1];
  if (b1 < lo || b1 > hi) return 0;
  for (let k = 2; k <= need; k++) {
    const b = bytes[i + k];
    if (b < 0x80 || b > 0xbf) return 0;
  }
  return need + 1;
}

function decodeSlow(bytes: Uint8Array): string {
  let out = "";
  let start = 0;
  let i = 0;
  while (i < bytes.length) {
    const len = sequenceLength(bytes, i);
    if (len > 0) {
      i += len;
      continue;
    }
    if (i > start) out += strictDecoder.decode(bytes.subarray(start, i));
    out += INVALID_BYTE;
    i++;
    start = i;
  }
  if (start < bytes.length) out += strictDecoder.decode(bytes.subarray(start));
  return out;
}
