import assert from "node:assert/strict";
import { injectJobFiles } from "../lib/engine/job_files.ts";
import type { JobEvent } from "../lib/engine/events.ts";
import type { JobFile } from "../lib/engine/job_request_types.ts";
import { encodeBase64 } from "../lib/util/base64.ts";

function file(path: string, content: string, mode = "0644"): JobFile {
  return { path, content, mode };
}

/** The step's events as `started`, output lines and `finished <code>`. */
function shape(events: readonly JobEvent[]): string[] {
  return events.map((e) => {
    if (e.event === "cmd_started") return `started ${e.directive}`;
    if (e.event === "cmd_output") return e.output;
    if (e.event === "cmd_finished") return `finished ${e.directive} ${e.exit_code}`;
    return e.event;
  });
}

Deno.test("injectJobFiles() writes every file with its decoded content", async () => {
  const events: JobEvent[] = [];
  const written: string[] = [];
  const exitCode = await injectJobFiles({ write: (e) => events.push(e) }, [
    file("a.txt", encodeBase64("A")),
    file("/b", encodeBase64("B"), "0600"),
  ], {
    shownPath: (f) => `/home/${f.path}`,
    write: (_log, f, content) => {
      written.push(`${f.path}=${new TextDecoder().decode(content)}`);
      return Promise.resolve(0);
    },
  });
  assert.equal(exitCode, 0);
  assert.deepEqual(written, ["a.txt=A", "/b=B"]);
  assert.deepEqual(shape(events), [
    "started Injecting Files",
    "Injecting /home/a.txt with file mode 0644\n",
    "Injecting /home//b with file mode 0600\n",
    "finished Injecting Files 0",
  ]);
});

Deno.test("injectJobFiles() stops at a file that cannot be decoded or written", async (t) => {
  await t.step("not base64: exit 1, nothing written", async () => {
    const events: JobEvent[] = [];
    let writes = 0;
    const exitCode = await injectJobFiles({ write: (e) => events.push(e) }, [
      file("bad", "!"),
      file("never", encodeBase64("x")),
    ], {
      shownPath: (f) => f.path,
      write: () => {
        writes++;
        return Promise.resolve(0);
      },
    });
    assert.equal(exitCode, 1);
    assert.equal(writes, 0);
    assert.deepEqual(shape(events), [
      "started Injecting Files",
      "Injecting bad with file mode 0644\n",
      "Failed to decode the content of the file.\n",
      "finished Injecting Files 1",
    ]);
  });
  await t.step("the writer's exit code ends the step", async () => {
    const events: JobEvent[] = [];
    const exitCode = await injectJobFiles({ write: (e) => events.push(e) }, [
      file("one", encodeBase64("x")),
      file("two", encodeBase64("y")),
    ], {
      shownPath: (f) => f.path,
      write: (log) => {
        log.text("disk full\n");
        return Promise.resolve(255);
      },
    });
    assert.equal(exitCode, 255);
    assert.deepEqual(shape(events), [
      "started Injecting Files",
      "Injecting one with file mode 0644\n",
      "disk full\n",
      "finished Injecting Files 255",
    ]);
  });
});
