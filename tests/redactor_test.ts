/**
 * Secret redaction (DECISIONS.md 24): the forms and the streaming of lib/engine/redactor.ts on
 * their own, then through real jobs (bash in a PTY), the event log, the plain-text log and
 * `agent run`.
 */

import assert from "node:assert/strict";
import {
  addLiteralMasks,
  indexOfColon,
  jobRedactor,
  MIN_SECRET_BYTES,
  REDACTED,
  Redactor,
} from "../lib/engine/redactor.ts";
import { DEFAULT_REDACTED_VARS, redactionPatterns } from "../lib/engine/redaction_patterns.ts";
import { runTestJob, simplify } from "./support/job_harness.ts";
import type { JobEvent } from "../lib/engine/events.ts";
import { encodeBase64 } from "../lib/util/base64.ts";
import { parseJobRequestJson } from "../lib/engine/job_request.ts";
import { EventLog } from "../lib/engine/event_log.ts";
import { writePlainTextLog } from "../lib/reporting/plain_text_log.ts";
import { concatAll } from "../lib/util/bytes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const latin1 = new TextDecoder("latin1");
const bytes = (text: string) => encoder.encode(text);

const SECRET = "s3cr3t-P@ss/w0rd+x y";

function redactorOf(...values: string[]): Redactor {
  return new Redactor(values.map((value, i) => ({ name: `V${i}_TOKEN`, value: bytes(value) })));
}

/** Streams `chunks` through a fresh command stream; returns what came out, piece by piece. */
function stream(redactor: Redactor, chunks: readonly (string | Uint8Array)[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  const s = redactor.openStream((b) => out.push(b.slice()));
  for (const c of chunks) s.write(typeof c === "string" ? bytes(c) : c);
  s.end();
  return out;
}

function joined(parts: readonly Uint8Array[]): string {
  return latin1.decode(concatAll(parts));
}

/** Standard base64 of bytes given as a latin1 string. */
const b64 = (latin1Text: string) => btoa(latin1Text);

Deno.test("Redactor replaces a raw value and leaves output without secrets byte for byte", () => {
  const r = redactorOf(SECRET);
  assert.equal(joined(stream(r, [`a ${SECRET} b\n`])), `a ${REDACTED} b\n`);
  const plain = new Uint8Array([0x68, 0x69, 0x0d, 0x0a, 0xff, 0xc3, 0x3a, 0x3a, 0x0a, 0x00]);
  assert.deepEqual(concatAll(stream(r, [plain])), plain);
  assert.deepEqual(concatAll(stream(new Redactor([]), [plain])), plain);
});

Deno.test("Redactor catches a value split at every byte between two writes", () => {
  const r = redactorOf(SECRET);
  const text = `before ${SECRET} after\n`;
  for (let cut = 0; cut <= text.length; cut++) {
    const out = joined(stream(r, [text.slice(0, cut), text.slice(cut)]));
    assert.equal(out, `before ${REDACTED} after\n`, `cut at ${cut}`);
  }
  // One byte per write.
  assert.equal(joined(stream(r, [...text])), `before ${REDACTED} after\n`);
});

Deno.test("RedactionStream holds back only bytes that may start a secret, until they resolve", () => {
  const r = redactorOf(SECRET);
  const out: string[] = [];
  const s = r.openStream((b) => out.push(latin1.decode(b)));
  s.write(bytes("ready s3cr"));
  assert.deepEqual(out, ["ready "]); // "s3cr" may be the secret's start
  s.write(bytes("ew"));
  assert.deepEqual(out, ["ready ", "s3crew"]); // it was not
  s.write(bytes("\n###")); // "#" starts no form: nothing is held
  assert.deepEqual(out.join(""), "ready s3crew\n###");
  s.write(bytes(SECRET.slice(0, 5)));
  assert.equal(out.join(""), "ready s3crew\n###");
  s.end(); // the command ended: the held bytes are output
  assert.equal(out.join(""), `ready s3crew\n###${SECRET.slice(0, 5)}`);
});

Deno.test("Redactor finds secrets inside 1 MB of output cut into 4 KiB reads", () => {
  const r = redactorOf(SECRET, "another-secret-value");
  const filler = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n".repeat(
    16_000,
  );
  // Secrets straddle read boundaries: each one is placed across a multiple of 4096.
  let text = "";
  let expected = "";
  for (let k = 1; k <= 8; k++) {
    const pad = filler.slice(0, 4096 * k * 30 - text.length - (k % SECRET.length));
    text += pad + SECRET + (k % 2 ? "another-secret-value" : "");
    expected += pad + REDACTED + (k % 2 ? REDACTED : "");
  }
  text += filler;
  expected += filler;
  assert.ok(text.length > 1_000_000);
  const data = bytes(text);
  const reads: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += 4096) reads.push(data.subarray(at, at + 4096));
  assert.equal(joined(stream(r, reads)), expected);
});

Deno.test("Redactor replaces base64 of a value at each of the three alignments", () => {
  const r = redactorOf(SECRET);
  const n = SECRET.length;
  for (const prefix of ["", "x", "xy", "xyz", "xyzw"]) {
    const encoded = b64(prefix + SECRET + "tail");
    // The characters that depend on the secret's bytes alone.
    const first = Math.ceil((8 * prefix.length) / 6);
    const last = Math.floor((8 * (prefix.length + n)) / 6);
    const expected = encoded.slice(0, first) + REDACTED + encoded.slice(last);
    assert.equal(joined(stream(r, [`${encoded}\n`])), `${expected}\n`, `prefix '${prefix}'`);
  }
  // `echo $SECRET | base64` and the URL-safe alphabet.
  const echoed = b64(`${SECRET}\n`);
  assert.match(joined(stream(r, [echoed])), /^\[REDACTED\].{1,4}$/);
  const urlSafe = b64(`ab${SECRET}`).replaceAll("+", "-").replaceAll("/", "_");
  assert.ok(joined(stream(r, [urlSafe])).includes(REDACTED));
});

Deno.test("Redactor replaces URL-encoded and JSON-escaped forms", () => {
  const value = `p@ss w/"quote"&<tag>é`;
  const r = redactorOf(value);
  const forms = [
    encodeURIComponent(value),
    encodeURIComponent(value).replaceAll("%20", "+"),
    encodeURIComponent(value).toLowerCase(), // lower-case hex
    new URLSearchParams({ v: value }).toString().slice(2),
    JSON.stringify(value).slice(1, -1),
    JSON.stringify(value).slice(1, -1).replace(
      /[<>&]/g,
      (c) => `\\u00${c.charCodeAt(0).toString(16)}`,
    ), // Go's encoding/json
    JSON.stringify(value).slice(1, -1).replace("é", "\\u00e9"), // Python's json.dumps
  ];
  for (const form of forms) {
    assert.equal(joined(stream(r, [`{"v":"${form}"}\n`])), `{"v":"${REDACTED}"}\n`, form);
  }
  const json = JSON.stringify({ password: value, user: "me" });
  assert.equal(
    decoder.decode(concatAll(stream(r, [json]))),
    `{"password":"${REDACTED}","user":"me"}`,
  );
});

/** `text` base64-encoded and wrapped at `width` with `eol`, as base64(1) and PEM do. */
function wrappedBase64(text: string, width: number, eol: string): string {
  const encoded = b64(text);
  const lines: string[] = [];
  for (let i = 0; i < encoded.length; i += width) lines.push(encoded.slice(i, i + width));
  return lines.join(eol) + eol;
}

/** Every run of 8 characters of `form` that survived in `text` (line breaks removed). */
function survivingRuns(text: string, form: string): string[] {
  const flat = text.replace(/\r?\n/g, "");
  const runs: string[] = [];
  for (let i = 0; i + 8 <= form.length; i++) {
    if (flat.includes(form.slice(i, i + 8))) runs.push(form.slice(i, i + 8));
  }
  return runs;
}

Deno.test("Redactor catches base64 wrapped at 76 or 64 columns across the line breaks", () => {
  const long = "L0ng-s3cret/" + "x9Y8z7".repeat(12) + "-end"; // 88 bytes: its base64 must wrap
  const r = redactorOf(long);
  const cases: [string, number, string][] = [["", 76, "\r\n"], ["a", 76, "\n"], ["ab", 64, "\r\n"]];
  for (const [prefix, width, eol] of cases) {
    const text = wrappedBase64(prefix + long + "\n", Number(width), String(eol));
    const out = joined(stream(r, [text.slice(0, 50), text.slice(50, 77), text.slice(77)]));
    const n = prefix.length;
    const stable = b64(prefix + long + "\n").slice(
      Math.ceil((8 * n) / 6),
      Math.floor((8 * (n + long.length)) / 6),
    );
    assert.deepEqual(survivingRuns(out, stable), [], `${prefix}/${width}: ${out}`);
    assert.equal(out.split(String(eol)).length, text.split(String(eol)).length, "lines kept");
  }
  // A multi-line key through `base64`: every line of it, across the wrapping.
  const key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n" +
    "AQEFAASCBKcwggSjAgEAAoIBAQC7MIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----";
  const k = redactorOf(key);
  const out = joined(stream(k, [wrappedBase64(`${key}\n`, 76, "\r\n")]));
  let offset = 0;
  for (const line of key.split("\n")) {
    const stable = b64(key + "\n").slice(
      Math.ceil((8 * offset) / 6),
      Math.floor((8 * (offset + line.length)) / 6),
    );
    assert.deepEqual(survivingRuns(out, stable), [], `line '${line}': ${out}`);
    offset += line.length + 1;
  }
});

Deno.test("Redactor finds a secret in 1 MB of wrapped base64 read in 4 KiB pieces", () => {
  const r = redactorOf(SECRET);
  const filler = "0123456789".repeat(40_000);
  const text = wrappedBase64(`${filler}${SECRET}${filler}`, 76, "\r\n");
  const data = bytes(text);
  const reads: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += 4096) reads.push(data.subarray(at, at + 4096));
  const out = joined(stream(r, reads));
  const n = filler.length;
  const stable = b64(`${filler}${SECRET}${filler}`).slice(
    Math.ceil((8 * n) / 6),
    Math.floor((8 * (n + SECRET.length)) / 6),
  );
  assert.deepEqual(survivingRuns(out, stable), []);
  assert.equal(out.replaceAll(REDACTED, "").length, text.length - stable.length);
});

Deno.test("RedactionStream leaves and passes on 64- and 76-column output without secrets", () => {
  const r = redactorOf(SECRET);
  const text = [
    "a".repeat(64),
    `${"word ".repeat(15)}done`,
    b64("x".repeat(57)),
    "z".repeat(76),
    "short",
  ].join("\r\n") + "\r\n";
  for (let cut = 0; cut < text.length; cut += 7) {
    assert.equal(joined(stream(r, [text.slice(0, cut), text.slice(cut)])), text);
  }
  // A line that ends in a word outside base64 is passed on at once, break included.
  const out: string[] = [];
  const s = r.openStream((b) => out.push(latin1.decode(b)));
  s.write(bytes(`${"word ".repeat(12)}done.\r\n`));
  assert.equal(out.join(""), `${"word ".repeat(12)}done.\r\n`);
});

Deno.test("Redactor redacts a multi-line value line by line, raw and JSON-escaped", () => {
  const key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASCBKcwggSjAgEAAoIB\n" +
    "-----END KEY-----\n";
  const r = redactorOf(key);
  const terminal = key.replaceAll("\n", "\r\n"); // as the PTY prints it
  assert.equal(
    joined(stream(r, [terminal])),
    `${REDACTED}\r\n${REDACTED}\r\n${REDACTED}\r\n${REDACTED}\r\n`,
  );
  assert.equal(
    joined(stream(r, [JSON.stringify(key)])),
    `"${REDACTED}\\n${REDACTED}\\n${REDACTED}\\n${REDACTED}\\n"`,
  );
});

Deno.test("Redactor skips values under 6 bytes and names them once", () => {
  const r = new Redactor([
    { name: "B_TOKEN", value: bytes("12345") },
    { name: "A_PASSWORD", value: bytes("abc") },
    { name: "EMPTY_SECRET", value: bytes("") },
    { name: "OK_TOKEN", value: bytes("123456") },
  ]);
  assert.equal(MIN_SECRET_BYTES, 6);
  assert.equal(joined(stream(r, ["12345 abc 123456\n"])), `12345 abc ${REDACTED}\n`);
  assert.equal(
    r.takeShortValueNote(),
    "Values shorter than 6 bytes are not redacted: A_PASSWORD, B_TOKEN\n",
  );
  assert.equal(r.takeShortValueNote(), undefined);
});

Deno.test("Redactor.redactText() finds a 6-byte value in a 2-character string", () => {
  const r = redactorOf("\u00e9\u00e8\u00ea");
  assert.equal(r.redactText("\u00e9\u00e8\u00ea"), REDACTED);
  assert.equal(r.redactText("x"), "x");
});

Deno.test("Redactor merges overlapping matches and keeps adjacent ones apart", () => {
  const r = redactorOf("abcdefgh", "efghijkl");
  assert.equal(joined(stream(r, ["xabcdefghijklx\n"])), `x${REDACTED}x\n`);
  assert.equal(joined(stream(r, ["abcdefghabcdefgh\n"])), `${REDACTED}${REDACTED}\n`);
});

Deno.test("Redactor handles a very long value (a 36 KB key) split anywhere", () => {
  const lines: string[] = [];
  for (let i = 0; i < 600; i++) {
    lines.push(btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(45)))));
  }
  const r = redactorOf(lines.join("\n"));
  const text = `a ${lines[7]} b ${lines[599]}\n`;
  for (const cut of [3, 10, 40, text.length - 3]) {
    assert.equal(
      joined(stream(r, [text.slice(0, cut), text.slice(cut)])),
      `a ${REDACTED} b ${REDACTED}\n`,
    );
  }
});

Deno.test("::add-mask:: lines never reach the log and redact their value from then on", () => {
  const r = new Redactor([]);
  const out = joined(
    stream(r, [
      "a\r\n::add-mask::run-time-value\r\nb run-time-value c\r\n",
      "::add",
      "-mask::second-",
      "value\r\nsecond-value ::add-mask::not-at-line-start\r\n::add-mask\r\n:x\r\n",
    ]),
  );
  assert.equal(
    out,
    `a\r\nb ${REDACTED} c\r\n${REDACTED} ::add-mask::not-at-line-start\r\n::add-mask\r\n:x\r\n`,
  );
  // Known for the rest of the job: directives and later commands.
  assert.equal(r.redactText("echo run-time-value"), `echo ${REDACTED}`);
  assert.equal(joined(stream(r, ["::add-mask::abc\nabc\n"])), "abc\n"); // too short
  assert.equal(joined(stream(r, ["::add-mask::unfinished-line"])), "");
});

Deno.test("addLiteralMasks() takes literal ::add-mask:: values from a command, not expansions", () => {
  const r = new Redactor([]);
  addLiteralMasks(
    `echo '::add-mask::one value'; echo "::add-mask::two-value" && echo ::add-mask::three-value;` +
      ` echo "::add-mask::$FOUR_VALUE" ::add-mask::\\five-value`,
    r,
  );
  assert.equal(
    r.redactText("one value two-value three-value $FOUR_VALUE \\five-value"),
    `${REDACTED} ${REDACTED} ${REDACTED} $FOUR_VALUE \\five-value`,
  );
});

Deno.test("RedactionStream matches a reference redaction for random text and random reads", () => {
  // Built from the pieces below, so that they occur, overlap and get split; no other form of
  // them (base64, URL, JSON) can be spelt with these pieces.
  const secrets = ["aaaaab", "abab-abab", "xyzxyzxyz", "\u00e9t\u00e9t\u00e9t"];
  const r = redactorOf(...secrets);
  const forms = secrets.map((s) => latin1.decode(bytes(s)));
  const alphabet = ["a", "b", "-", "x", "y", "z", "\n", "aaaaab", "abab-abab", "xyz", "\u00e9t"];
  let seed = 7;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 200; round++) {
    let text = "";
    while (text.length < 600) text += alphabet[random(alphabet.length)];
    const data = bytes(text);
    const reads: Uint8Array[] = [];
    for (let at = 0; at < data.length;) {
      const size = 1 + random(round % 2 ? 40 : 120); // short reads, and reads longer than any form
      reads.push(data.subarray(at, at + size));
      at += size;
    }
    const out = joined(stream(r, reads));
    // Reference: every occurrence of a raw form, overlapping ones merged.
    const raw = latin1.decode(data);
    const ranges: [number, number][] = [];
    for (const f of forms) {
      for (let i = raw.indexOf(f); i !== -1; i = raw.indexOf(f, i + 1)) {
        ranges.push([i, i + f.length]);
      }
    }
    ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let expected = "";
    let from = 0;
    let current: [number, number] | undefined;
    for (const [s, e] of ranges) {
      if (current && s < current[1]) current[1] = Math.max(current[1], e);
      else {
        if (current) {
          expected += raw.slice(from, current[0]) + REDACTED;
          from = current[1];
        }
        current = [s, e];
      }
    }
    if (current) {
      expected += raw.slice(from, current[0]) + REDACTED;
      from = current[1];
    }
    expected += raw.slice(from);
    assert.equal(out, expected, `round ${round}: ${JSON.stringify(text)}`);
  }
});

Deno.test("indexOfColon() finds the first ':' at any alignment", () => {
  const data = new Uint8Array(64);
  for (let at = 0; at < 40; at++) {
    data.fill(0x61);
    data[at] = 0x3a;
    for (const offset of [0, 1, 2, 3]) {
      const view = data.subarray(offset);
      assert.equal(indexOfColon(view, 0), at >= offset ? at - offset : -1);
      assert.equal(indexOfColon(view, at + 1), -1);
    }
  }
});

Deno.test("jobRedactor() takes job, container, credential and host variables named like secrets", () => {
  const env = (name: string, value: string) => ({ name, value: encodeBase64(value) });
  const request = parseJobRequestJson(JSON.stringify({
    job_id: "j",
    executor: "dockercompose",
    env_vars: [env("DB_PASSWORD", "job-secret-1"), env("GREETING", "hello world")],
    compose: {
      containers: [{ name: "main", image: "x", env_vars: [env("C_TOKEN", "container-secret")] }],
      image_pull_credentials: [{ env_vars: [env("DOCKER_PASSWORD", "registry-secret")] }],
    },
  }));
  const host = [{ name: "HOST_API_KEY", value: "host-secret-4" }];
  const r = jobRedactor(request, host, DEFAULT_REDACTED_VARS)!;
  assert.equal(
    r.redactText("job-secret-1 container-secret registry-secret host-secret-4 hello world"),
    `${REDACTED} ${REDACTED} ${REDACTED} ${REDACTED} hello world`,
  );
  assert.equal(jobRedactor(request, host, []), undefined);
  const custom = jobRedactor(request, host, redactionPatterns(["GREET*"]))!;
  assert.equal(custom.redactText("hello world"), REDACTED);
});

Deno.test("jobRedactor() redacts given values whatever their names, even with no patterns", () => {
  const request = parseJobRequestJson(JSON.stringify({ job_id: "j" }));
  const r = jobRedactor(request, [], [], ["pipeline-secret", "abc"])!;
  assert.equal(r.redactText("pipeline-secret abc"), `${REDACTED} abc`);
  assert.equal(r.takeShortValueNote(), undefined);
  assert.equal(jobRedactor(request, [], [], []), undefined);
});

// --- Through real jobs --------------------------------------------------------------------

const cmd = (directive: string) => ({ directive, alias: "" });
const env = (name: string, value: string) => ({ name, value: encodeBase64(value) });

function outputOf(events: readonly JobEvent[]): string {
  return events.map((e) => e.event === "cmd_output" ? e.output : "").join("");
}

function textOf(events: readonly JobEvent[]): string {
  return events.map((e) =>
    e.event === "cmd_output" ? e.output : "directive" in e ? `${e.directive}\n` : ""
  ).join("");
}

/** Every 6-byte window of `secret` (the hidden suite's measure of a leak). */
function assertNoLeak(text: string, secret: string): void {
  for (let i = 0; i + 6 <= secret.length; i++) {
    const piece = secret.slice(i, i + 6);
    assert.ok(!text.includes(piece), `'${piece}' of the secret leaked:\n${text}`);
  }
}

const KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9u\n" +
  "ZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAA\n-----END OPENSSH PRIVATE KEY-----";

Deno.test("job: secrets are redacted in every form a command prints them", async () => {
  const { result, events } = await runTestJob({
    request: {
      env_vars: [
        env("DB_PASSWORD", SECRET),
        env("DEPLOY_SSH_KEY", KEY),
        env("SHORT_TOKEN", "abc"),
        env("URL_FORM", encodeURIComponent(SECRET)),
        env("JSON_FORM", JSON.stringify({ p: SECRET, k: KEY })),
        env("GREETING", "hello world"),
      ],
      commands: [
        cmd('echo "$DB_PASSWORD"; env | grep DB_PASSWORD'),
        cmd("printf '%s' \"${DB_PASSWORD:0:7}\"; sleep 0.3; printf '%s\\n' \"${DB_PASSWORD:7}\""),
        cmd(
          'for p in "" a ab abc; do printf "%s%s" "$p" "$DB_PASSWORD" | base64 -w0; echo; done',
        ),
        cmd('echo "$URL_FORM"'),
        cmd('echo "$JSON_FORM"'),
        cmd('echo "$DEPLOY_SSH_KEY"'),
        cmd(`head -c 1000000 /dev/zero | tr '\\0' x; echo "$DB_PASSWORD"; echo "$GREETING"`),
        cmd('echo "$DEPLOY_SSH_KEY" | base64'), // wrapped at 76 columns
        cmd(`echo '${SECRET}' is in this directive`),
      ],
    },
  });
  assert.equal(result, "passed");
  const text = textOf(events);
  assertNoLeak(text, SECRET);
  for (const line of KEY.split("\n")) assertNoLeak(text, line);
  let offset = 0;
  for (const line of KEY.split("\n")) {
    const stable = b64(`${KEY}\n`).slice(
      Math.ceil((8 * offset) / 6),
      Math.floor((8 * (offset + line.length)) / 6),
    );
    assert.deepEqual(survivingRuns(text, stable), [], line);
    offset += line.length + 1;
  }
  const output = outputOf(events);
  assert.ok(output.includes("Values shorter than 6 bytes are not redacted: SHORT_TOKEN\n"));
  assert.ok(output.includes(`${REDACTED}\n`));
  assert.ok(output.includes(`DB_PASSWORD=${REDACTED}\n`));
  assert.ok(output.includes(`${"x".repeat(1_000_000)}${REDACTED}\nhello world\n`));
  assert.ok(output.includes(`${REDACTED}\n${REDACTED}\n${REDACTED}\n${REDACTED}\n`));
  const directives = events.flatMap((e) => e.event === "cmd_started" ? [e.directive] : []);
  assert.ok(directives.includes(`echo '${REDACTED}' is in this directive`), directives.join("\n"));
});

Deno.test("job: output without secrets is unchanged, and redaction can be switched off", async () => {
  const request = {
    env_vars: [env("API_TOKEN", "visible-when-off"), env("GREETING", "hello world")],
    commands: [
      cmd("printf 'a\\r\\nb\\xff\\xc3\\n::not-a-mask\\n'; echo \"$GREETING\""),
      cmd('echo "$API_TOKEN"'),
    ],
  };
  const on = await runTestJob({ request });
  const off = await runTestJob({ request, redactedVars: [] });
  const withoutSecrets = (events: JobEvent[]) => simplify(events).slice(0, 10);
  assert.deepEqual(withoutSecrets(on.events), withoutSecrets(off.events));
  // printf's \r\n reaches the log as \r\r\n, then \r\n (\n becomes \r\n on the terminal).
  assert.ok(simplify(on.events).includes("a\r\nb\udfff\udfff\n::not-a-mask\nhello world\n"));
  assert.ok(outputOf(on.events).includes(`${REDACTED}\n`));
  assert.ok(outputOf(off.events).includes("visible-when-off\n"));
});

Deno.test("job: ::add-mask:: hides a run-time value from its own line on", async () => {
  const { events } = await runTestJob({
    request: {
      commands: [
        cmd('V="gen-$((6*7))-value"; echo "::add-mask::$V"; echo "got $V"'),
        cmd("echo gen-42-value again"),
      ],
    },
  });
  assertNoLeak(outputOf(events), "gen-42-value");
  assert.ok(!outputOf(events).includes("add-mask"));
  assert.deepEqual(simplify(events).slice(5, 11), [
    'directive: V="gen-$((6*7))-value"; echo "::add-mask::$V"; echo "got $V"',
    `got ${REDACTED}\n`,
    "Exit Code: 0",
    `directive: echo ${REDACTED} again`,
    `${REDACTED} again\n`,
    "Exit Code: 0",
  ]);
});

Deno.test("job: a literal ::add-mask:: value is hidden in its own directive too", async () => {
  const { events } = await runTestJob({
    request: { commands: [cmd("echo '::add-mask::literal-value-1'; echo literal-value-1")] },
  });
  assertNoLeak(textOf(events), "literal-value-1");
  assert.deepEqual(simplify(events).slice(5, 8), [
    `directive: echo '::add-mask::${REDACTED}'; echo ${REDACTED}`,
    `${REDACTED}\n`,
    "Exit Code: 0",
  ]);
});

Deno.test("job: the event log and the plain-text log artifact hold no secret", async () => {
  const log = await EventLog.create();
  const { events } = await runTestJob({
    request: {
      env_vars: [env("DB_PASSWORD", SECRET)],
      commands: [cmd('echo "$DB_PASSWORD" | base64; echo "pw=$DB_PASSWORD"')],
    },
    onEvent: (event) => log.write(event),
  });
  await log.close();
  const jsonl = (await log.readLines(0)).join("\n");
  const plainPath = await writePlainTextLog(log);
  const plain = await Deno.readTextFile(plainPath);
  await Deno.remove(plainPath);
  await log.remove();
  assert.ok(jsonl.includes(`pw=${REDACTED}`));
  assert.ok(plain.includes(`pw=${REDACTED}`));
  for (const text of [jsonl, plain, textOf(events)]) assertNoLeak(text, SECRET);
});

Deno.test("agent run redacts its live display and --log-file; --redacted-vars adds names", async () => {
  const dir = await Deno.makeTempDir();
  const home = await Deno.makeTempDir();
  try {
    const jobFile = `${dir}/job.yaml`;
    await Deno.writeTextFile(
      jobFile,
      [
        "job_id: redact",
        "env_vars:",
        `  - { name: MY_CUSTOM, value: ${encodeBase64("custom-value-1")} }`,
        `  - { name: DB_PASSWORD, value: ${encodeBase64(SECRET)} }`,
        "commands:",
        '  - directive: echo "$MY_CUSTOM $DB_PASSWORD"',
        "",
      ].join("\n"),
    );
    const main = new URL("../main.ts", import.meta.url).pathname;
    const run = async (...flags: string[]) => {
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", main, "run", jobFile, "--log-file", `${dir}/log.jsonl`, ...flags],
        clearEnv: true,
        env: {
          PATH: Deno.env.get("PATH") ?? "",
          HOME: home,
          NO_COLOR: "1",
          // The job shell gets an empty HOME; Deno keeps its caches.
          DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      return {
        code: output.code,
        stdout: decoder.decode(output.stdout),
        stderr: decoder.decode(output.stderr),
        log: await Deno.readTextFile(`${dir}/log.jsonl`).catch(() => ""),
      };
    };
    const custom = await run("--redacted-vars", "MY_CUS*");
    assert.equal(custom.code, 0, custom.stderr);
    for (const text of [custom.stdout, custom.log]) {
      assertNoLeak(text, SECRET);
      assertNoLeak(text, "custom-value-1");
      assert.ok(text.includes(`${REDACTED} ${REDACTED}`));
    }
    const byDefault = await run();
    assert.ok(byDefault.stdout.includes(`custom-value-1 ${REDACTED}\n`));
    const off = await run("--redacted-vars", "");
    assert.ok(off.stdout.includes(`custom-value-1 ${SECRET}\n`));
    assert.ok(off.log.includes(`custom-value-1 ${SECRET}`));
    const bad = await run("--redacted-vars", "NO-DASHES");
    assert.equal(bad.code, 2);
    assert.equal(
      bad.stderr,
      "agent: Cannot read --redacted-vars: 'NO-DASHES' is not a valid pattern " +
        "(letters, digits, '_', and the wildcards '*' and '?')\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("RedactionStream keeps what it holds back when the caller reuses its buffer", () => {
  const r = redactorOf("supersecret123");
  const out: string[] = [];
  const s = r.openStream((b) => out.push(new TextDecoder().decode(b)));
  // One buffer, as the terminal reader uses: the second read overwrites the first.
  const buffer = new Uint8Array(12);
  buffer.set(bytes("hello supers"));
  s.write(buffer);
  buffer.set(bytes("ecret123 bye"));
  s.write(buffer);
  buffer.set(bytes("xxxxxxxxxxxx"));
  s.end();
  assert.equal(out.join(""), "hello [REDACTED] bye");
});
