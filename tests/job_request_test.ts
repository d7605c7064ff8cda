import assert from "node:assert/strict";
import {
  DEFAULT_MAX_LOG_SIZE,
  JobRequestError,
  maxLogSize,
  parseJobRequestFile,
  parseJobRequestJson,
  parseJobRequestYaml,
  validateForJob,
} from "../lib/engine/job_request.ts";
import type { JobRequest } from "../lib/engine/job_request_types.ts";
import { decodeBase64 } from "../lib/util/base64.ts";

/** SEMAPHORE_COMPAT.md §4.6, verbatim. */
const FULL_JSON = `{
  "job_id": "9c1d2d7e-6c7b-4e55-9f57-2a0c6f2b8a11",
  "executor": "dockercompose",
  "compose": {
    "containers": [
      {
        "name": "main",
        "image": "registry.semaphoreci.com/ruby:2.6",
        "env_vars": [ { "name": "FOO", "value": "YmFyCg==" } ]
      },
      {
        "name": "db",
        "image": "registry.semaphoreci.com/postgres:9.6",
        "command": "postgres",
        "entrypoint": "/docker-entrypoint.sh",
        "user": "postgres",
        "env_vars": [ { "name": "POSTGRES_PASSWORD", "value": "c2VjcmV0" } ]
      }
    ],
    "image_pull_credentials": [
      {
        "env_vars": [
          { "name": "DOCKER_CREDENTIAL_TYPE", "value": "RG9ja2VySHVi" },
          { "name": "DOCKERHUB_USERNAME", "value": "dXNlcg==" },
          { "name": "DOCKERHUB_PASSWORD", "value": "cGFzcw==" }
        ],
        "files": []
      }
    ],
    "host_setup_commands": [ { "directive": "echo HostSetupCommands" } ]
  },
  "env_vars": [
    { "name": "SEMAPHORE_JOB_ID", "value": "OWMxZDJkN2UtNmM3Yi00ZTU1LTlmNTctMmEwYzZmMmI4YTEx" },
    { "name": "A", "value": "aGVsbG8K" }
  ],
  "files": [
    { "path": "test.txt", "content": "aGVsbG8K", "mode": "0644" },
    { "path": "/tmp/a", "content": "aGVsbG8K", "mode": "0600" }
  ],
  "ssh_public_keys": [ "c3NoLXJzYSBBQUFBQjNOemFDMXljMkVBQUFBREFRQUJBQUFCQVFDN3JMcHJ1... (base64 of 'ssh-rsa AAAA...')" ],
  "commands": [
    { "directive": "echo Hello World", "alias": "Display Hello World" },
    { "directive": "cat test.txt" }
  ],
  "epilogue_always_commands": [ { "directive": "echo Hello Epilogue $SEMAPHORE_JOB_RESULT" } ],
  "epilogue_on_pass_commands": [ { "directive": "echo passed" } ],
  "epilogue_on_fail_commands": [ { "directive": "echo failed" } ],
  "callbacks": {
    "finished": "https://example.semaphoreci.com/jobs/9c1d.../callbacks/finished",
    "teardown_finished": "https://example.semaphoreci.com/jobs/9c1d.../callbacks/teardown_finished",
    "token": "callback-bearer-token"
  },
  "logger": { "method": "pull", "max_size_in_bytes": 16777216 }
}`;

const FULL_EXPECTED: JobRequest = {
  job_id: "9c1d2d7e-6c7b-4e55-9f57-2a0c6f2b8a11",
  executor: "dockercompose",
  compose: {
    containers: [
      {
        name: "main",
        image: "registry.semaphoreci.com/ruby:2.6",
        command: "",
        entrypoint: "",
        user: "",
        env_vars: [{ name: "FOO", value: "YmFyCg==" }],
      },
      {
        name: "db",
        image: "registry.semaphoreci.com/postgres:9.6",
        command: "postgres",
        entrypoint: "/docker-entrypoint.sh",
        user: "postgres",
        env_vars: [{ name: "POSTGRES_PASSWORD", value: "c2VjcmV0" }],
      },
    ],
    image_pull_credentials: [
      {
        env_vars: [
          { name: "DOCKER_CREDENTIAL_TYPE", value: "RG9ja2VySHVi" },
          { name: "DOCKERHUB_USERNAME", value: "dXNlcg==" },
          { name: "DOCKERHUB_PASSWORD", value: "cGFzcw==" },
        ],
        files: [],
      },
    ],
    host_setup_commands: [{ directive: "echo HostSetupCommands", alias: "" }],
  },
  commands: [
    { directive: "echo Hello World", alias: "Display Hello World" },
    { directive: "cat test.txt", alias: "" },
  ],
  epilogue_always_commands: [
    { directive: "echo Hello Epilogue $SEMAPHORE_JOB_RESULT", alias: "" },
  ],
  epilogue_on_pass_commands: [{ directive: "echo passed", alias: "" }],
  epilogue_on_fail_commands: [{ directive: "echo failed", alias: "" }],
  env_vars: [
    { name: "SEMAPHORE_JOB_ID", value: "OWMxZDJkN2UtNmM3Yi00ZTU1LTlmNTctMmEwYzZmMmI4YTEx" },
    { name: "A", value: "aGVsbG8K" },
  ],
  files: [
    { path: "test.txt", content: "aGVsbG8K", mode: "0644" },
    { path: "/tmp/a", content: "aGVsbG8K", mode: "0600" },
  ],
  ssh_public_keys: [
    "c3NoLXJzYSBBQUFBQjNOemFDMXljMkVBQUFBREFRQUJBQUFCQVFDN3JMcHJ1... (base64 of 'ssh-rsa AAAA...')",
  ],
  callbacks: {
    finished: "https://example.semaphoreci.com/jobs/9c1d.../callbacks/finished",
    teardown_finished: "https://example.semaphoreci.com/jobs/9c1d.../callbacks/teardown_finished",
    token: "callback-bearer-token",
  },
  logger: { method: "pull", url: "", token: "", max_size_in_bytes: 16777216 },
};

/** SEMAPHORE_COMPAT.md §4.7, verbatim. */
const FULL_YAML = `job_id: "9c1d2d7e-6c7b-4e55-9f57-2a0c6f2b8a11"
executor: shell
env_vars:
  - name: A
    value: aGVsbG8K
file:                      # NOTE: singular key in YAML
  - path: /tmp/test.txt
    mode: "0644"
    content: aGVsbG8K
commands:
  - directive: echo 'hello world'
  - directive: cat /tmp/test.txt
epilogue_always_commands:
  - directive: echo "result is $SEMAPHORE_JOB_RESULT"
callbacks:
  finished: https://httpbingo.org/status/200
  teardown_finished: https://httpbingo.org/status/200
`;

const EMPTY: JobRequest = {
  job_id: "",
  executor: "shell",
  compose: { containers: [], image_pull_credentials: [], host_setup_commands: [] },
  commands: [],
  epilogue_always_commands: [],
  epilogue_on_pass_commands: [],
  epilogue_on_fail_commands: [],
  env_vars: [],
  files: [],
  ssh_public_keys: [],
  callbacks: { finished: "", teardown_finished: "", token: "" },
  logger: { method: "pull", url: "", token: "", max_size_in_bytes: 0 },
};

/** Runs `parse` and returns the JobRequestError it throws, after checking the basics. */
function parseError(parse: () => unknown): JobRequestError {
  try {
    parse();
  } catch (error) {
    assert.ok(error instanceof JobRequestError, `not a JobRequestError: ${error}`);
    assert.ok(error instanceof SyntaxError);
    assert.equal(error.name, "JobRequestError");
    assert.ok(!error.message.includes("\n"), `message is not one line: ${error.message}`);
    return error;
  }
  assert.fail("expected a JobRequestError");
}

Deno.test("parseJobRequestJson() parses the full example of §4.6", () => {
  assert.deepEqual(parseJobRequestJson(FULL_JSON), FULL_EXPECTED);
});

Deno.test("parseJobRequestYaml() parses the example of §4.7", () => {
  assert.deepEqual(parseJobRequestYaml(FULL_YAML), {
    ...EMPTY,
    job_id: "9c1d2d7e-6c7b-4e55-9f57-2a0c6f2b8a11",
    env_vars: [{ name: "A", value: "aGVsbG8K" }],
    files: [{ path: "/tmp/test.txt", content: "aGVsbG8K", mode: "0644" }],
    commands: [
      { directive: "echo 'hello world'", alias: "" },
      { directive: "cat /tmp/test.txt", alias: "" },
    ],
    epilogue_always_commands: [{ directive: 'echo "result is $SEMAPHORE_JOB_RESULT"', alias: "" }],
    callbacks: {
      finished: "https://httpbingo.org/status/200",
      teardown_finished: "https://httpbingo.org/status/200",
      token: "",
    },
  });
});

Deno.test("parseJobRequestYaml() gives the same request as JSON for the same data", () => {
  const fromYaml = parseJobRequestYaml(JSON.stringify(JSON.parse(FULL_JSON)));
  // Flow YAML is JSON: only `files` differs, which YAML also accepts (DECISIONS.md item 1).
  assert.deepEqual(fromYaml, FULL_EXPECTED);
});

Deno.test("parseJobRequestJson() matches keys case-insensitively like Go", async (t) => {
  await t.step("mixed case at every level", () => {
    const request = parseJobRequestJson(`{
      "Job_ID": "x", "EXECUTOR": "shell",
      "Commands": [{"DIRECTIVE": "echo", "Alias": "a"}],
      "compose": {"Containers": [{"NAME": "main", "Env_Vars": [{"Name": "N", "VALUE": "dg=="}]}]},
      "LOGGER": {"Method": "push", "URL": "http://h", "Max_Size_In_Bytes": 5}
    }`);
    assert.equal(request.job_id, "x");
    assert.deepEqual(request.commands, [{ directive: "echo", alias: "a" }]);
    assert.equal(request.compose.containers[0].name, "main");
    assert.deepEqual(request.compose.containers[0].env_vars, [{ name: "N", value: "dg==" }]);
    assert.deepEqual(request.logger, {
      method: "push",
      url: "http://h",
      token: "",
      max_size_in_bytes: 5,
    });
  });
  await t.step("Unicode folding: long s and the Kelvin sign", () => {
    const request = parseJobRequestJson(
      '{"\\u017fsh_public_keys": ["a"], "callbacks": {"to\\u212aen": "t"}}',
    );
    assert.deepEqual(request.ssh_public_keys, ["a"]);
    assert.equal(request.callbacks.token, "t");
  });
  await t.step("a later duplicate wins, whatever its case", () => {
    assert.equal(parseJobRequestJson('{"job_id": "a", "JOB_ID": "b"}').job_id, "b");
    assert.equal(parseJobRequestJson('{"JOB_ID": "a", "job_id": "b"}').job_id, "b");
  });
  await t.step("keys that are not field names stay unknown", () => {
    assert.deepEqual(parseJobRequestJson('{"jobid": "a", "job-id": "b", "job_id ": "c"}'), EMPTY);
    assert.deepEqual(
      parseJobRequestJson('{"__proto__": 1, "constructor": {}, "toString": 1}'),
      EMPTY,
    );
  });
});

Deno.test("parseJobRequestYaml() matches keys exactly", () => {
  assert.deepEqual(parseJobRequestYaml("Job_ID: x\nCOMMANDS: [{directive: a}]\n"), EMPTY);
});

Deno.test("parse functions ignore unknown fields of any type", async (t) => {
  const unknown = `"id": 1, "services": [{"x": [1, {"y": null}]}], "epilogue_commands": "s",
    "timeout": true, "nested": {"deep": [[[]]]}`;
  await t.step("JSON", () => {
    const request = parseJobRequestJson(`{${unknown}, "job_id": "j",
      "callbacks": {"started": "u", "finished": "f"},
      "commands": [{"directive": "d", "extra": {"a": 1}}]}`);
    assert.deepEqual(request, {
      ...EMPTY,
      job_id: "j",
      callbacks: { finished: "f", teardown_finished: "", token: "" },
      commands: [{ directive: "d", alias: "" }],
    });
  });
  await t.step("YAML", () => {
    const request = parseJobRequestYaml(`{${unknown}}\n`);
    assert.deepEqual(request, EMPTY);
    const obsolete = parseJobRequestYaml(
      "id: x\nservices: [a]\nepilogue_commands: [{directive: b}]\ncallbacks: {started: u}\n",
    );
    assert.deepEqual(obsolete, EMPTY);
  });
});

Deno.test("parse functions give zero values for missing and null fields", async (t) => {
  await t.step("empty object", () => {
    assert.deepEqual(parseJobRequestJson("{}"), EMPTY);
    assert.deepEqual(parseJobRequestYaml("{}"), EMPTY);
  });
  await t.step("null everywhere", () => {
    const nulls = `{"job_id": null, "executor": null, "compose": null, "commands": null,
      "env_vars": [{"name": "N", "value": null}], "files": [{"mode": null}],
      "ssh_public_keys": [null], "callbacks": null,
      "logger": {"method": null, "max_size_in_bytes": null}}`;
    const expected: JobRequest = {
      ...EMPTY,
      env_vars: [{ name: "N", value: "" }],
      files: [{ path: "", content: "", mode: "" }],
      ssh_public_keys: [""],
    };
    assert.deepEqual(parseJobRequestJson(nulls), expected);
    assert.deepEqual(parseJobRequestYaml(nulls), expected);
  });
  await t.step("YAML empty values are null", () => {
    assert.deepEqual(parseJobRequestYaml("job_id:\ncommands:\n  -\nlogger: ~\n"), {
      ...EMPTY,
      commands: [{ directive: "", alias: "" }],
    });
  });
});

Deno.test("parse functions apply the executor and logger defaults and keep set values", () => {
  const request = parseJobRequestJson('{"logger": {"max_size_in_bytes": 7}}');
  assert.equal(request.executor, "shell");
  assert.equal(request.logger.method, "pull");
  assert.equal(request.logger.max_size_in_bytes, 7);
  const set = parseJobRequestYaml("executor: whatever\nlogger: {method: push, url: u, token: t}\n");
  assert.equal(set.executor, "whatever");
  assert.deepEqual(set.logger, { method: "push", url: "u", token: "t", max_size_in_bytes: 0 });
});

Deno.test("parseJobRequestYaml() takes files from file: and files:", async (t) => {
  const a = { path: "a", content: "YQ==", mode: "0644" };
  const b = { path: "b", content: "Yg==", mode: "0600" };
  await t.step("file: only (the original's key)", () => {
    const request = parseJobRequestYaml(`file:\n  - {path: a, content: YQ==, mode: "0644"}\n`);
    assert.deepEqual(request.files, [a]);
  });
  await t.step("files: only (DECISIONS.md item 1)", () => {
    const request = parseJobRequestYaml(`files:\n  - {path: b, content: Yg==, mode: "0600"}\n`);
    assert.deepEqual(request.files, [b]);
  });
  await t.step("both: file then files, whatever their order", () => {
    const request = parseJobRequestYaml(
      `files: [{path: b, content: Yg==, mode: "0600"}]\nfile: [{path: a, content: YQ==, mode: "0644"}]\n`,
    );
    assert.deepEqual(request.files, [a, b]);
  });
  await t.step("errors name the key the user wrote", () => {
    assert.equal(
      parseError(() => parseJobRequestYaml("file: [{path: [1]}]")).field,
      "file[0].path",
    );
    assert.equal(parseError(() => parseJobRequestYaml("files: 3")).field, "files");
  });
  await t.step("JSON knows only files", () => {
    assert.deepEqual(parseJobRequestJson('{"file": [{"path": "a"}]}').files, []);
  });
});

Deno.test("parseJobRequestYaml() reads a numeric mode as the user meant it", async (t) => {
  const modes: [string, string][] = [
    ["0644", "0644"], // YAML 1.2 reads decimal 644: keep the digits, octal as chmod reads them
    ["0600", "0600"],
    ["644", "644"],
    ["755", "755"],
    ["0o755", "0755"], // explicit YAML 1.2 octal
    ["0x1A4", "0644"], // hex 420 = octal 644
    ['"0644"', "0644"], // the normal case: a string
    ["'0777'", "0777"],
    ["+x", "+x"], // a string: the consumer reports `bad file permission '+x'`
    ["0689", "0689"], // not octal: kept as written so the consumer's error shows it
  ];
  for (const [yaml, mode] of modes) {
    await t.step(`mode: ${yaml}`, () => {
      assert.equal(parseJobRequestYaml(`file: [{path: a, mode: ${yaml}}]`).files[0].mode, mode);
    });
  }
  await t.step("in JSON a numeric mode is a type error (§4)", () => {
    const error = parseError(() => parseJobRequestJson('{"files": [{"mode": 644}]}'));
    assert.equal(error.message, "files[0].mode: expected a string");
  });
});

Deno.test("parse functions reject a job env var name that is not a shell variable name", async (t) => {
  const rejected: [string, string][] = [
    ["A;touch /tmp/x", '"A;touch /tmp/x"'],
    ["$(touch /tmp/x)", '"$(touch /tmp/x)"'],
    ["A\ntouch /tmp/x", '"A\\ntouch /tmp/x"'],
    ["1A", '"1A"'],
    ["A-B", '"A-B"'],
    ["A=B", '"A=B"'],
    ["", '""'],
    ["Ä", '"Ä"'],
    [`${"x".repeat(100)};${"y".repeat(1000)}`, `"${"x".repeat(100)}..."`],
  ];
  for (const [name, shown] of rejected) {
    await t.step(JSON.stringify(name).slice(0, 50), () => {
      const vars = [{ name: "OK", value: "" }, { name: "_ok_2", value: "" }, { name, value: "" }];
      const problem = `${shown} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)`;
      const json = parseError(() =>
        parseJobRequestJson(JSON.stringify({ commands: [], env_vars: vars }))
      );
      assert.equal(json.message, `env_vars[2].name: ${problem}`);
      assert.equal(json.field, "env_vars[2].name");
      const yaml = parseError(() =>
        parseJobRequestYaml(JSON.stringify({ env_vars: vars }), { file: "job.yaml" })
      );
      assert.equal(yaml.message, `job.yaml: env_vars[2].name: ${problem}`);
    });
  }
  await t.step("a missing or null name", () => {
    assert.equal(
      parseError(() => parseJobRequestJson('{"env_vars": [{"value": "YQ=="}]}')).message,
      'env_vars[0].name: "" is not a variable name ([A-Za-z_][A-Za-z0-9_]*)',
    );
    assert.equal(
      parseError(() => parseJobRequestJson('{"env_vars": [null]}')).message,
      'env_vars[0].name: "" is not a variable name ([A-Za-z_][A-Za-z0-9_]*)',
    );
  });
  await t.step("names of container and credential variables are not shell names: kept", () => {
    const request = parseJobRequestJson(
      '{"compose": {"containers": [{"env_vars": [{"name": "spring.profile"}]}],' +
        '"image_pull_credentials": [{"env_vars": [{"name": "a-b"}]}]}}',
    );
    assert.equal(request.compose.containers[0].env_vars[0].name, "spring.profile");
    assert.equal(request.compose.image_pull_credentials[0].env_vars[0].name, "a-b");
  });
});

Deno.test("parseJobRequestYaml() takes any scalar for a string field as written", () => {
  const request = parseJobRequestYaml(
    "job_id: 42\ncommands:\n  - directive: true\n    alias: 1.50\nenv_vars: [{name: N, value: 0x10}]\n",
  );
  assert.equal(request.job_id, "42");
  assert.deepEqual(request.commands, [{ directive: "true", alias: "1.50" }]);
  assert.deepEqual(request.env_vars, [{ name: "N", value: "0x10" }]);
});

Deno.test("parseJobRequestJson() names the path of every type mismatch", async (t) => {
  const cases: [string, string, string][] = [
    ['{"job_id": 1}', "job_id", "expected a string"],
    ['{"executor": true}', "executor", "expected a string"],
    ['{"commands": {}}', "commands", "expected a list"],
    [
      '{"commands": [{"directive": "a"}, {}, {"directive": 5}]}',
      "commands[2].directive",
      "expected a string",
    ],
    ['{"commands": ["echo"]}', "commands[0]", "expected an object"],
    [
      '{"epilogue_always_commands": [{"alias": []}]}',
      "epilogue_always_commands[0].alias",
      "expected a string",
    ],
    ['{"epilogue_on_pass_commands": "x"}', "epilogue_on_pass_commands", "expected a list"],
    ['{"epilogue_on_fail_commands": [1]}', "epilogue_on_fail_commands[0]", "expected an object"],
    ['{"env_vars": [{"name": 1}]}', "env_vars[0].name", "expected a string"],
    ['{"env_vars": [{"name": "A", "value": {}}]}', "env_vars[0].value", "expected a string"],
    ['{"files": [{"path": false}]}', "files[0].path", "expected a string"],
    ['{"files": [{"content": 1}]}', "files[0].content", "expected a string"],
    ['{"ssh_public_keys": ["a", 2]}', "ssh_public_keys[1]", "expected a string"],
    ['{"compose": []}', "compose", "expected an object"],
    ['{"compose": {"containers": [{}, "x"]}}', "compose.containers[1]", "expected an object"],
    [
      '{"compose": {"containers": [{"image": 1}]}}',
      "compose.containers[0].image",
      "expected a string",
    ],
    [
      '{"compose": {"containers": [{"command": 1}]}}',
      "compose.containers[0].command",
      "expected a string",
    ],
    [
      '{"compose": {"containers": [{"entrypoint": []}]}}',
      "compose.containers[0].entrypoint",
      "expected a string",
    ],
    [
      '{"compose": {"containers": [{"user": 0}]}}',
      "compose.containers[0].user",
      "expected a string",
    ],
    [
      '{"compose": {"containers": [{"env_vars": [{}, {"value": 1}]}]}}',
      "compose.containers[0].env_vars[1].value",
      "expected a string",
    ],
    [
      '{"compose": {"image_pull_credentials": {}}}',
      "compose.image_pull_credentials",
      "expected a list",
    ],
    [
      '{"compose": {"image_pull_credentials": [{"files": [{"mode": 420}]}]}}',
      "compose.image_pull_credentials[0].files[0].mode",
      "expected a string",
    ],
    [
      '{"compose": {"image_pull_credentials": [{"env_vars": [{"name": 1}]}]}}',
      "compose.image_pull_credentials[0].env_vars[0].name",
      "expected a string",
    ],
    [
      '{"compose": {"host_setup_commands": [{"directive": 1}]}}',
      "compose.host_setup_commands[0].directive",
      "expected a string",
    ],
    ['{"callbacks": "x"}', "callbacks", "expected an object"],
    ['{"callbacks": {"finished": 1}}', "callbacks.finished", "expected a string"],
    ['{"callbacks": {"teardown_finished": 1}}', "callbacks.teardown_finished", "expected a string"],
    ['{"callbacks": {"token": 1}}', "callbacks.token", "expected a string"],
    ['{"logger": 1}', "logger", "expected an object"],
    ['{"logger": {"method": 1}}', "logger.method", "expected a string"],
    ['{"logger": {"url": 1}}', "logger.url", "expected a string"],
    ['{"logger": {"token": 1}}', "logger.token", "expected a string"],
    ['{"logger": {"max_size_in_bytes": "16"}}', "logger.max_size_in_bytes", "expected an integer"],
    ['{"logger": {"max_size_in_bytes": 1.5}}', "logger.max_size_in_bytes", "expected an integer"],
    ['{"logger": {"max_size_in_bytes": 1e3}}', "logger.max_size_in_bytes", "expected an integer"],
    [
      '{"logger": {"max_size_in_bytes": 9223372036854775808}}',
      "logger.max_size_in_bytes",
      "integer out of range",
    ],
    ['{"Logger": {"Max_Size_In_Bytes": true}}', "logger.max_size_in_bytes", "expected an integer"],
  ];
  for (const [json, field, problem] of cases) {
    await t.step(`${field}: ${problem}`, () => {
      const error = parseError(() => parseJobRequestJson(json));
      assert.equal(error.field, field);
      assert.equal(error.problem, problem);
      assert.equal(error.message, `${field}: ${problem}`);
      assert.equal(error.file, undefined);
      assert.equal(error.line, 1);
    });
  }
  await t.step("the position of the value is kept", () => {
    const error = parseError(() =>
      parseJobRequestJson('{\n  "commands": [\n    {"directive": 5}]}')
    );
    assert.deepEqual([error.line, error.column], [3, 19]);
  });
  await t.step("integers in range pass, negative included", () => {
    assert.equal(
      parseJobRequestJson('{"logger": {"max_size_in_bytes": -1}}').logger.max_size_in_bytes,
      -1,
    );
    const big = parseJobRequestJson('{"logger": {"max_size_in_bytes": 9223372036854775807}}');
    assert.equal(big.logger.max_size_in_bytes, 9223372036854775807);
  });
});

Deno.test("parse functions reject a top level that is not an object", async (t) => {
  for (const text of ["[]", '"x"', "1", "null", "true"]) {
    await t.step(`JSON ${text}`, () => {
      const error = parseError(() => parseJobRequestJson(text));
      assert.equal(error.field, "");
      assert.equal(error.message, "expected an object at the top level");
    });
  }
  for (const text of ["- a", "x", "1", "~"]) {
    await t.step(`YAML ${text}`, () => {
      const error = parseError(() => parseJobRequestYaml(text, { file: "job.yaml" }));
      assert.equal(error.message, "job.yaml: expected an object at the top level");
    });
  }
  await t.step("an empty YAML document", () => {
    for (const text of ["", "# only a comment\n", "---\n"]) {
      const error = parseError(() => parseJobRequestYaml(text, { file: "job.yaml" }));
      assert.equal(
        error.message,
        "job.yaml: expected an object at the top level, found an empty document",
      );
    }
  });
});

Deno.test("parseJobRequestYaml() names the file, the field and the position", () => {
  const error = parseError(() =>
    parseJobRequestYaml("commands:\n  - directive: echo\n  - directive: [a]\n", {
      file: "job.yaml",
    })
  );
  assert.equal(error.message, "job.yaml: commands[1].directive: expected a string");
  assert.deepEqual([error.file, error.field, error.line, error.column], [
    "job.yaml",
    "commands[1].directive",
    3,
    16,
  ]);
  const compose = parseError(() =>
    parseJobRequestYaml("compose:\n  containers:\n    - name: main\n    - db\n", { file: "j.yml" })
  );
  assert.equal(compose.message, "j.yml: compose.containers[1]: expected an object");
  const integer = parseError(() => parseJobRequestYaml("logger: {max_size_in_bytes: 16MiB}"));
  assert.equal(integer.message, "logger.max_size_in_bytes: expected an integer");
  const quoted = parseError(() => parseJobRequestYaml('logger: {max_size_in_bytes: "16"}'));
  assert.equal(quoted.message, "logger.max_size_in_bytes: expected an integer");
  assert.equal(
    parseJobRequestYaml("logger: {max_size_in_bytes: 0x10}").logger.max_size_in_bytes,
    16,
  );
});

Deno.test("parseJobRequestJson() reports truncated JSON with its position", async (t) => {
  await t.step("every prefix of the full example fails cleanly", () => {
    for (let end = 0; end < FULL_JSON.length - 1; end += 7) {
      const error = parseError(() => parseJobRequestJson(FULL_JSON.slice(0, end)));
      assert.equal(error.field, "");
      assert.ok(error.message.startsWith("invalid JSON: "), error.message);
      assert.ok(error.line !== undefined && error.column !== undefined);
    }
  });
  await t.step("the message names the end of input and where it is", () => {
    const error = parseError(() => parseJobRequestJson('{\n  "commands": [{"directive": "a"}'));
    assert.equal(error.message, "invalid JSON: unexpected end of input at line 2, column 34");
    assert.deepEqual([error.line, error.column], [2, 34]);
    const empty = parseError(() => parseJobRequestJson(""));
    assert.equal(empty.message, "invalid JSON: unexpected end of input at line 1, column 1");
    const inString = parseError(() => parseJobRequestJson('{"job_id": "abc'));
    assert.equal(
      inString.message,
      "invalid JSON: unexpected end of input in a string at line 1, column 16",
    );
  });
  await t.step("with a file name the position comes first", () => {
    const error = parseError(() => parseJobRequestJson('{"a":', { file: "req.json" }));
    assert.equal(error.message, "req.json:1:6: invalid JSON: unexpected end of input");
  });
});

Deno.test("parseJobRequestJson() rejects invalid JSON as strictly as JSON.parse", async (t) => {
  const invalid: [string, string][] = [
    [
      '{"a": 1,}',
      "invalid JSON: unexpected character '}' where a key was expected at line 1, column 9",
    ],
    [
      '{"a": [1,]}',
      "invalid JSON: unexpected character ']' where a value was expected at line 1, column 10",
    ],
    [
      "{'a': 1}",
      "invalid JSON: unexpected character ''' where a key was expected at line 1, column 2",
    ],
    [
      '{"a": 01}',
      "invalid JSON: unexpected character '1' where ',' or '}' was expected at line 1, column 8",
    ],
    [
      '{"a": .5}',
      "invalid JSON: unexpected character '.' where a value was expected at line 1, column 7",
    ],
    ['{"a": -}', "invalid JSON: unexpected character '}' in a number at line 1, column 8"],
    ['{"a": tru}', "invalid JSON: unexpected character '}' in 'true' at line 1, column 10"],
    ['{"a": "\t"}', "invalid JSON: control character U+0009 in a string at line 1, column 8"],
    ['{"a": "\\x"}', "invalid JSON: invalid escape '\\x' in a string at line 1, column 8"],
    ['{"a": "\\u12g4"}', "invalid JSON: invalid \\u escape in a string at line 1, column 8"],
    [
      '{"a" 1}',
      "invalid JSON: unexpected character '1' where ':' was expected at line 1, column 6",
    ],
    [
      "{} {}",
      "invalid JSON: unexpected character '{' after the top-level value at line 1, column 4",
    ],
    [
      "\ufeff{}",
      "invalid JSON: unexpected character U+FEFF where a value was expected at line 1, column 1",
    ],
    [
      "{/* c */}",
      "invalid JSON: unexpected character '/' where a key was expected at line 1, column 2",
    ],
    [
      '{"a": NaN}',
      "invalid JSON: unexpected character 'N' where a value was expected at line 1, column 7",
    ],
  ];
  for (const [text, message] of invalid) {
    await t.step(text, () => {
      assert.throws(() => JSON.parse(text), SyntaxError);
      assert.equal(parseError(() => parseJobRequestJson(text)).message, message);
    });
  }
  await t.step("escapes and odd whitespace that are valid", () => {
    const request = parseJobRequestJson(
      '\r\n\t {"job_id" \n:\t"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\u0000", "x": [1e-3, -0.0, 2E+10]} \n',
    );
    assert.equal(request.job_id, '"\\/\b\f\n\r\té😀\0');
  });
  await t.step("agrees with JSON.parse on random mutations", () => {
    const alphabet = '{}[]:,"\\ 0123456789-+.eEtrufalsn\tx\n';
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const base = JSON.stringify(JSON.parse(FULL_JSON).compose);
    for (let round = 0; round < 3000; round++) {
      let text = base;
      for (let edits = 1 + random(3); edits > 0; edits--) {
        const at = random(text.length);
        const op = random(3);
        const char = alphabet[random(alphabet.length)];
        if (op === 0) text = text.slice(0, at) + text.slice(at + 1);
        else if (op === 1) text = text.slice(0, at) + char + text.slice(at);
        else text = text.slice(0, at) + char + text.slice(at + 1);
      }
      let valid = true;
      try {
        JSON.parse(text);
      } catch {
        valid = false;
      }
      const wrapped = `{"unknown": ${text}}`;
      if (valid) parseJobRequestJson(wrapped);
      else parseError(() => parseJobRequestJson(wrapped));
    }
  });
  await t.step("nesting is limited instead of overflowing the stack", () => {
    const deep = (n: number) => `{"x": ${"[".repeat(n)}${"]".repeat(n)}}`;
    assert.deepEqual(parseJobRequestJson(deep(998)), EMPTY);
    const error = parseError(() => parseJobRequestJson(deep(100_000)));
    assert.match(
      error.message,
      /^invalid JSON: nesting deeper than 1000 levels at line 1, column \d+$/,
    );
  });
});

Deno.test("parseJobRequestYaml() reports invalid YAML with its position", async (t) => {
  const cases: [string, string][] = [
    [
      "commands:\n  - directive: a\n   b: c\n",
      "job.yaml:3:1: invalid YAML: Sequence item without - indicator",
    ],
    ["job_id: a\njob_id: b\n", "job.yaml:2:1: invalid YAML: Map keys must be unique"],
    [
      "commands: [a,\n",
      "job.yaml:2:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ],
    ["\tjob_id: a\n", "job.yaml:1:1: invalid YAML: Tabs are not allowed as indentation"],
    [
      "job_id: a\n---\njob_id: b\n",
      "job.yaml:2:1: invalid YAML: more than one document (only one job per file)",
    ],
    ["commands: [*nothing]\n", "job.yaml:1:12: invalid YAML: unknown alias *nothing"],
  ];
  for (const [text, message] of cases) {
    await t.step(message, () => {
      const error = parseError(() => parseJobRequestYaml(text, { file: "job.yaml" }));
      assert.equal(error.message, message);
      assert.equal(error.field, "");
      assert.equal(error.file, "job.yaml");
    });
  }
  await t.step("without a file name", () => {
    const error = parseError(() => parseJobRequestYaml("a: b: c"));
    assert.equal(
      error.message,
      "invalid YAML: Nested mappings are not allowed in compact mappings at line 1, column 4",
    );
    assert.ok(error.cause instanceof Error);
  });
});

Deno.test("parseJobRequestYaml() follows anchors, aliases and merge keys", async (t) => {
  await t.step("aliases and << merges", () => {
    const request = parseJobRequestYaml(`
defaults: &env {name: A, value: YQ==}
base: &cmd {directive: make, alias: build}
env_vars: [*env, {<<: *env, name: B}]
commands: [*cmd, {<<: [{alias: x}, *cmd], directive: test}]
compose:
  containers:
    - &main {name: main, image: ruby, env_vars: [*env]}
    - *main
`);
    assert.deepEqual(request.env_vars, [{ name: "A", value: "YQ==" }, {
      name: "B",
      value: "YQ==",
    }]);
    assert.deepEqual(request.commands, [
      { directive: "make", alias: "build" },
      { directive: "test", alias: "x" },
    ]);
    assert.equal(request.compose.containers.length, 2);
    assert.deepEqual(request.compose.containers[1].env_vars, [{ name: "A", value: "YQ==" }]);
  });
  await t.step("an alias bomb costs what its text costs", () => {
    const lines = ["e0: &e0 [{name: A, value: YQ==}, {name: B, value: Yg==}]"];
    lines.push("c0: &c0 {name: main, env_vars: *e0}");
    for (let i = 1; i <= 20; i++) {
      lines.push(`c${i}: &c${i} [*c${i - 1}, *c${i - 1}, *c${i - 1}, *c${i - 1}]`);
    }
    lines.push("compose: {containers: [" + Array(2000).fill("*c0").join(", ") + "]}");
    const start = performance.now();
    const request = parseJobRequestYaml(lines.join("\n"));
    assert.equal(request.compose.containers.length, 2000);
    assert.ok(performance.now() - start < 5000);
  });
});

/** What `fn` throws (`undefined` when it returns). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

Deno.test("parseJobRequestFile() reads a YAML job file", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await t.step("a valid file", async () => {
      const path = `${dir}/job.yaml`;
      await Deno.writeTextFile(path, FULL_YAML);
      assert.deepEqual(parseJobRequestFile(path), parseJobRequestYaml(FULL_YAML));
    });
    await t.step("a UTF-8 BOM is allowed", async () => {
      const path = `${dir}/bom.yaml`;
      await Deno.writeTextFile(path, "\ufeffjob_id: b\n");
      assert.equal(parseJobRequestFile(path).job_id, "b");
    });
    await t.step("an invalid field names the file and the field", async () => {
      const path = `${dir}/bad.yaml`;
      await Deno.writeTextFile(path, "env_vars:\n  - name: [A]\n");
      const error = thrown(() => parseJobRequestFile(path));
      assert.ok(error instanceof JobRequestError);
      assert.equal(error.message, `${path}: env_vars[0].name: expected a string`);
      assert.deepEqual([error.file, error.line, error.column], [path, 2, 11]);
    });
    await t.step("invalid YAML names the file and the position", async () => {
      const path = `${dir}/broken.yaml`;
      await Deno.writeTextFile(path, "job_id: [\n");
      const error = thrown(() => parseJobRequestFile(path));
      assert.ok(error instanceof JobRequestError);
      assert.match(error.message, new RegExp(`^${path}:2:1: invalid YAML: `));
    });
    await t.step("a missing file", () => {
      const path = `${dir}/missing.yaml`;
      const error = thrown(() => parseJobRequestFile(path));
      assert.ok(error instanceof JobRequestError);
      assert.equal(error.message, `${path}: Cannot read job file: no such file`);
      assert.ok(error.cause instanceof Deno.errors.NotFound);
    });
    await t.step("a directory", () => {
      const error = thrown(() => parseJobRequestFile(dir));
      assert.ok(error instanceof JobRequestError);
      assert.match(error.message, new RegExp(`^${dir}: Cannot read job file: `));
      assert.ok(!error.message.includes("\n"));
    });
    await t.step("a file that never ends", () => {
      const error = thrown(() => parseJobRequestFile("/dev/zero"));
      assert.ok(error instanceof JobRequestError);
      assert.equal(
        error.message,
        "/dev/zero: Cannot read job file: the file is larger than 16777216 bytes",
      );
    });
    await t.step("a file that is not UTF-8", async () => {
      const path = `${dir}/latin1.yaml`;
      await Deno.writeFile(path, new Uint8Array([0x6a, 0x3a, 0x20, 0xe9, 0x0a]));
      const error = thrown(() => parseJobRequestFile(path));
      assert.ok(error instanceof JobRequestError);
      assert.equal(error.message, `${path}: Cannot read job file: the file is not valid UTF-8`);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validateForJob() returns the original's construction errors", async (t) => {
  const request = (json: string) => parseJobRequestJson(json);
  await t.step("a usable request", () => {
    assert.equal(validateForJob(request("{}")), undefined);
    assert.equal(validateForJob(request(FULL_JSON)), undefined);
    assert.equal(validateForJob(request('{"logger": {"method": "push", "url": "u"}}')), undefined);
  });
  await t.step("errors", () => {
    assert.equal(validateForJob(request('{"executor": "docker"}')), "unknown executor type");
    assert.equal(validateForJob(request('{"logger": {"method": "file"}}')), "unknown logger type");
    assert.equal(
      validateForJob(request('{"logger": {"method": "push"}}')),
      "HTTP logger needs a URL",
    );
    assert.equal(
      validateForJob(request('{"executor": "dockercompose", "compose": {"containers": []}}')),
      "compose.containers: a dockercompose job needs at least one container",
    );
  });
  await t.step("the logger is checked before the executor, as the original builds it first", () => {
    assert.equal(
      validateForJob(request('{"executor": "x", "logger": {"method": "y"}}')),
      "unknown logger type",
    );
  });
  await t.step("empty executor and method count as the defaults", () => {
    assert.equal(
      validateForJob({ ...EMPTY, executor: "", logger: { ...EMPTY.logger, method: "" } }),
      undefined,
    );
  });
});

Deno.test("maxLogSize() applies the 16 MiB default only for 0", () => {
  assert.equal(DEFAULT_MAX_LOG_SIZE, 16777216);
  assert.equal(maxLogSize(EMPTY), 16777216);
  assert.equal(maxLogSize({ ...EMPTY, logger: { ...EMPTY.logger, max_size_in_bytes: 100 } }), 100);
});

Deno.test("parse functions read a 10 MB request in reasonable time", async (t) => {
  const commands = Array.from({ length: 40_000 }, (_, i) => ({
    directive: `echo "line ${i}" ${"x".repeat(60)}`,
    alias: `step ${i}`,
  }));
  const envVars = Array.from({ length: 20_000 }, (_, i) => ({ name: `V${i}`, value: "aGVsbG8K" }));
  const content = btoa("y".repeat(4_000_000));
  const data = {
    job_id: "big",
    commands,
    env_vars: envVars,
    files: [{ path: "big.bin", content, mode: "0644" }],
  };
  await t.step("JSON", () => {
    const json = JSON.stringify(data);
    assert.ok(json.length > 10_000_000);
    const start = performance.now();
    const request = parseJobRequestJson(json);
    const elapsed = performance.now() - start;
    assert.equal(request.commands.length, 40_000);
    assert.equal(request.files[0].content.length, content.length);
    assert.equal(decodeBase64(request.files[0].content).length, 4_000_000);
    assert.ok(elapsed < 3000, `took ${elapsed} ms`);
  });
  await t.step("YAML (flow style, as the yaml package is the slow part)", () => {
    const yaml = JSON.stringify(data);
    const start = performance.now();
    const request = parseJobRequestYaml(yaml);
    const elapsed = performance.now() - start;
    assert.equal(request.env_vars.length, 20_000);
    assert.ok(elapsed < 20_000, `took ${elapsed} ms`);
  });
});
