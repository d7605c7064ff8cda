import assert from "node:assert/strict";
import {
  type AgentConfig,
  CONFIG_KEYS,
  envVarName,
  loadConfig,
  parseGoBool,
  randomAgentName,
} from "../lib/start/config.ts";
import { UsageError } from "../lib/util/errors.ts";
import { FakeHub } from "./support/fake_hub.ts";
import { DEFAULT_REDACTED_VARS } from "../lib/engine/redaction_patterns.ts";

const REQUIRED = { endpoint: "myorg.semaphoreci.com", token: "tok" } as const;

function load(
  flags: Record<string, unknown>,
  env: Record<string, string> = {},
): Promise<AgentConfig> {
  return loadConfig(flags, { getEnv: (name) => env[name] });
}

async function assertFatal(promise: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(promise, (error: Error) => {
    assert.ok(error instanceof UsageError, `${error.name}: ${error.message}`);
    assert.equal(error.message, message);
    assert.equal(error.exitCode, 1);
    return true;
  });
}

async function withConfigFile(
  text: string,
  fn: (path: string) => Promise<void>,
  ext = "yaml",
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/config.${ext}`;
  await Deno.writeTextFile(path, text);
  try {
    await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("CONFIG_KEYS lists the original's 25 keys and ours, each with a flag in main.ts and an env var", async () => {
  // The original's 25 (§3.1), then ours: metrics-addr and log-format (issue 11), the job limits
  // (DECISIONS.md 23), redacted-vars (DECISIONS.md 24).
  assert.equal(CONFIG_KEYS.length, 31);
  assert.equal(new Set(CONFIG_KEYS).size, 31);
  assert.deepEqual(CONFIG_KEYS.slice(25), [
    "metrics-addr",
    "log-format",
    "job-memory-limit",
    "job-cpu-limit",
    "job-pids-limit",
    "redacted-vars",
  ]);
  const main = await Deno.readTextFile(new URL("../main.ts", import.meta.url));
  const start = main.slice(
    main.indexOf("function addStartOptions"),
    main.indexOf("function addServeOptions"),
  );
  for (const key of CONFIG_KEYS) {
    assert.match(start, new RegExp(`"--${key}[ "]`), `main.ts lacks the flag --${key}`);
  }
  const flagsInMain = [...start.matchAll(/"--([a-z-]+)[ "]/g)].map((m) => m[1]);
  assert.deepEqual([...flagsInMain].sort(), [...CONFIG_KEYS].sort());
  assert.equal(
    envVarName("disconnect-after-idle-timeout"),
    "SEMAPHORE_AGENT_DISCONNECT_AFTER_IDLE_TIMEOUT",
  );
  assert.equal(envVarName("source-pre-job-hook"), "SEMAPHORE_AGENT_SOURCE_PRE_JOB_HOOK");
});

Deno.test("loadConfig() uses the defaults when only the required keys are set", async () => {
  const config = await load({ ...REQUIRED, name: "agent-name-1" });
  assert.ok(Object.isFrozen(config));
  assert.deepEqual(
    { ...config },
    {
      configFile: "",
      name: "agent-name-1",
      nameSource: "name",
      nameIsUrl: false,
      nameFromEnv: "",
      endpoint: "myorg.semaphoreci.com",
      token: "tok",
      noHttps: false,
      shutdownHookPath: "",
      preJobHookPath: "",
      postJobHookPath: "",
      disconnectAfterJob: false,
      jobId: "",
      disconnectAfterIdleTimeout: 0,
      interruptionGracePeriod: 0,
      envVars: [],
      files: [],
      failOnMissingFiles: false,
      uploadJobLogs: "never",
      failOnPreJobHookError: false,
      sourcePreJobHook: false,
      kubernetesExecutor: false,
      kubernetesPodSpec: "",
      kubernetesAllowedImages: [],
      kubernetesLabels: [],
      kubernetesPodStartTimeout: 300,
      kubernetesDefaultImage: "",
      logsFlushTimeoutSeconds: 60,
      metricsAddr: undefined,
      logFormat: "text",
      jobLimits: {},
      redactedVars: [...DEFAULT_REDACTED_VARS],
    },
  );
});

Deno.test("loadConfig() reads metrics-addr and log-format from flags, env and file, and rejects bad ones", async () => {
  const fromEnv = await load(REQUIRED, {
    SEMAPHORE_AGENT_METRICS_ADDR: "127.0.0.1:9464",
    SEMAPHORE_AGENT_LOG_FORMAT: "JSON",
  });
  assert.deepEqual(fromEnv.metricsAddr, { hostname: "127.0.0.1", port: 9464 });
  assert.equal(fromEnv.logFormat, "json");
  const fromFlag = await load({ ...REQUIRED, "metrics-addr": ":9100" });
  assert.deepEqual(fromFlag.metricsAddr, { hostname: "0.0.0.0", port: 9100 });
  await assert.rejects(
    () => load({ ...REQUIRED, "metrics-addr": "localhost" }),
    (error: Error) =>
      error instanceof UsageError && error.exitCode === 1 &&
      error.message ===
        "Cannot use metrics address 'localhost': expected HOST:PORT, e.g. 127.0.0.1:9090. Exiting...",
  );
  await assert.rejects(
    () => load({ ...REQUIRED, "log-format": "xml" }),
    (error: Error) =>
      error instanceof UsageError &&
      error.message === "Log format xml not supported (text, json). Exiting...",
  );
});

Deno.test("loadConfig() reads the job limits from flags, variables and the file", async () => {
  await withConfigFile("job-memory-limit: 2G\njob-pids-limit: 100", async (path) => {
    const config = await load(
      { ...REQUIRED, "config-file": path, "job-pids-limit": "50" },
      { SEMAPHORE_AGENT_JOB_CPU_LIMIT: "1.5" },
    );
    assert.deepEqual(config.jobLimits, { memoryBytes: 2 * 1024 ** 3, cpus: 1.5, pids: 50 });
  });
});

Deno.test("loadConfig() stops with one line for a job limit that is not one", async () => {
  await assertFatal(
    load(REQUIRED, { SEMAPHORE_AGENT_JOB_MEMORY_LIMIT: "lots" }),
    "Cannot read job-memory-limit: 'lots' is not a memory size of at least 1 MiB (e.g. 512M, 2G). Exiting...",
  );
});

Deno.test("loadConfig() adds redacted-vars to the defaults, and an empty flag or list switches redaction off", async () => {
  const defaults = [...DEFAULT_REDACTED_VARS];
  assert.deepEqual((await load(REQUIRED)).redactedVars, defaults);
  assert.deepEqual(
    (await load({ ...REQUIRED, "redacted-vars": ["MY_VAR", "*_KEY"] })).redactedVars,
    [...defaults, "MY_VAR", "*_KEY"],
  );
  assert.deepEqual((await load({ ...REQUIRED, "redacted-vars": [] })).redactedVars, []);
  // The environment variable: a list separated by spaces (or commas); empty counts as unset.
  assert.deepEqual(
    (await load(REQUIRED, { SEMAPHORE_AGENT_REDACTED_VARS: "A_* B,C" })).redactedVars,
    [...defaults, "A_*", "B", "C"],
  );
  assert.deepEqual(
    (await load(REQUIRED, { SEMAPHORE_AGENT_REDACTED_VARS: "" })).redactedVars,
    defaults,
  );
  await withConfigFile("redacted-vars: []\n", async (path) => {
    assert.deepEqual(
      (await load({ ...REQUIRED, "config-file": path })).redactedVars,
      [],
    );
  });
  await withConfigFile("redacted-vars: [DEPLOY_KEY]\n", async (path) => {
    assert.deepEqual(
      (await load({ ...REQUIRED, "config-file": path })).redactedVars,
      [...defaults, "DEPLOY_KEY"],
    );
  });
  await assertFatal(
    load({ ...REQUIRED, "redacted-vars": ["MY-VAR"] }),
    "Error parsing --redacted-vars: 'MY-VAR' is not a valid pattern " +
      "(letters, digits, '_', and the wildcards '*' and '?')",
  );
});

Deno.test("loadConfig() gives explicit flags precedence over env over file over defaults", async () => {
  await withConfigFile(
    [
      "endpoint: file.example.com",
      "token: file-token",
      "name: file-agent-name",
      "disconnect-after-idle-timeout: 10",
      "interruption-grace-period: 7",
      "env-vars: [A=file]",
      "no-https: true",
      "upload-job-logs: always",
    ].join("\n"),
    async (path) => {
      const env = {
        SEMAPHORE_AGENT_TOKEN: "env-token",
        SEMAPHORE_AGENT_DISCONNECT_AFTER_IDLE_TIMEOUT: "20",
        SEMAPHORE_AGENT_ENV_VARS: "B=env C=env",
        SEMAPHORE_AGENT_NO_HTTPS: "false",
      };
      const config = await load(
        { "config-file": path, "disconnect-after-idle-timeout": 30, "env-vars": ["D=flag"] },
        env,
      );
      assert.equal(config.endpoint, "file.example.com"); // file only
      assert.equal(config.token, "env-token"); // env over file
      assert.equal(config.name, "file-agent-name");
      assert.equal(config.disconnectAfterIdleTimeout, 30); // flag over env and file
      assert.equal(config.interruptionGracePeriod, 7);
      assert.deepEqual(config.envVars, [{ name: "D", value: "flag" }]);
      assert.equal(config.noHttps, false); // env "false" over file true
      assert.equal(config.uploadJobLogs, "always");
      assert.equal(config.configFile, path);
      const withoutFlag = await load({ "config-file": path }, env);
      assert.deepEqual(withoutFlag.envVars, [{ name: "B", value: "env" }, {
        name: "C",
        value: "env",
      }]);
      assert.equal(withoutFlag.disconnectAfterIdleTimeout, 20);
    },
  );
});

Deno.test("loadConfig() splits env slices on whitespace, not commas", async (t) => {
  await t.step("whitespace", async () => {
    const config = await load(REQUIRED, {
      SEMAPHORE_AGENT_ENV_VARS: " A=1\tB=2\n C=3 ",
      SEMAPHORE_AGENT_FILES: "/a:/b /c:/d",
    });
    assert.deepEqual(config.envVars.map((v) => v.name), ["A", "B", "C"]);
    assert.deepEqual(config.files, [
      { hostPath: "/a", destination: "/b" },
      { hostPath: "/c", destination: "/d" },
    ]);
  });
  await t.step("a comma makes one invalid entry", async () => {
    await assertFatal(
      load(REQUIRED, { SEMAPHORE_AGENT_ENV_VARS: "A=1,B=2" }),
      "Error parsing --env-vars: A=1,B=2 is not a valid environment variable",
    );
  });
});

Deno.test("loadConfig() reads booleans with Go ParseBool semantics from env", async (t) => {
  for (const value of ["1", "t", "T", "TRUE", "true", "True"]) {
    await t.step(value, async () => {
      const config = await load(REQUIRED, { SEMAPHORE_AGENT_NO_HTTPS: value });
      assert.equal(config.noHttps, true);
    });
  }
  for (const value of ["0", "f", "F", "FALSE", "false", "False"]) {
    await t.step(value, async () => {
      const config = await load({ ...REQUIRED, "no-https": true }, {
        SEMAPHORE_AGENT_DISCONNECT_AFTER_JOB: value,
      });
      assert.equal(config.disconnectAfterJob, false);
    });
  }
  assert.equal(parseGoBool("yes"), undefined);
  await assertFatal(
    load(REQUIRED, { SEMAPHORE_AGENT_DISCONNECT_AFTER_JOB: "yes" }),
    "Cannot read SEMAPHORE_AGENT_DISCONNECT_AFTER_JOB: 'yes' is not a boolean",
  );
});

Deno.test("loadConfig() treats an empty SEMAPHORE_AGENT_* variable as unset, as viper does", async (t) => {
  // viper.getEnv: `return val, ok && (v.allowEmptyEnv || val != "")`; the agent never calls
  // AllowEmptyEnv(true), so `SEMAPHORE_AGENT_X=` falls through to the config file / default.
  const file = 'endpoint: "myorg.semaphoreci.com"\ntoken: "tok"\nupload-job-logs: always\n';
  await withConfigFile(file, async (path) => {
    const load = (env: Record<string, string>) =>
      loadConfig({ "config-file": path }, { getEnv: (name) => env[name] });
    await t.step("an empty string variable does not hide the config file value", async () => {
      const config = await load({
        SEMAPHORE_AGENT_ENDPOINT: "",
        SEMAPHORE_AGENT_UPLOAD_JOB_LOGS: "",
      });
      assert.equal(config.endpoint, "myorg.semaphoreci.com");
      assert.equal(config.uploadJobLogs, "always");
    });
    await t.step("an empty bool or int variable is the default, not an error", async () => {
      const config = await load({
        SEMAPHORE_AGENT_DISCONNECT_AFTER_JOB: "",
        SEMAPHORE_AGENT_DISCONNECT_AFTER_IDLE_TIMEOUT: "",
        SEMAPHORE_AGENT_NO_HTTPS: "",
      });
      assert.equal(config.disconnectAfterJob, false);
      assert.equal(config.disconnectAfterIdleTimeout, 0);
      assert.equal(config.noHttps, false);
    });
  });
});

Deno.test("loadConfig() ignores SEMAPHORE_AGENT_CONFIG_FILE", async () => {
  const config = await load(REQUIRED, { SEMAPHORE_AGENT_CONFIG_FILE: "/does/not/exist.yaml" });
  assert.equal(config.configFile, "");
});

Deno.test("loadConfig() refuses unknown config file keys by name", async (t) => {
  await t.step("top level", async () => {
    await withConfigFile("endpoint: x\ntoken: y\njob-log-archival: true\n", async (path) => {
      await assertFatal(
        load({ "config-file": path }),
        "Unrecognized option 'job-log-archival'. Exiting...",
      );
    });
  });
  await t.step("nested keys appear as parent.child", async () => {
    await withConfigFile("endpoint: x\nfoo:\n  bar: 1\n", async (path) => {
      await assertFatal(load({ "config-file": path }), "Unrecognized option 'foo.bar'. Exiting...");
    });
  });
  await t.step("keys are lower-cased", async () => {
    await withConfigFile("Endpoint: x\nToken: y\nName: agent-name-2\nCONFIG: z\n", async (path) => {
      await assertFatal(load({ "config-file": path }), "Unrecognized option 'config'. Exiting...");
    });
    await withConfigFile("Endpoint: x\nToken: y\nName: agent-name-2\n", async (path) => {
      const config = await load({ "config-file": path });
      assert.equal(config.endpoint, "x");
      assert.equal(config.name, "agent-name-2");
    });
  });
  await t.step("the unknown key is reported before other errors", async () => {
    await withConfigFile("job-id: 1\nbogus: 1\n", async (path) => {
      await assertFatal(load({ "config-file": path }), "Unrecognized option 'bogus'. Exiting...");
    });
  });
});

Deno.test("loadConfig() reports a missing or unreadable config file", async (t) => {
  await t.step("missing", async () => {
    await assertFatal(
      load({ "config-file": "/nonexistent/agent.yaml" }),
      "Couldn't find config file /nonexistent/agent.yaml: open /nonexistent/agent.yaml: " +
        "no such file or directory",
    );
  });
  await t.step("unsupported extension", async () => {
    await withConfigFile("endpoint: x\n", async (path) => {
      await assertFatal(
        load({ "config-file": path }),
        `Error reading config file ${path}: Unsupported Config Type "txt"`,
      );
    }, "txt");
  });
  await t.step("not YAML", async () => {
    await withConfigFile("endpoint: [x\n", async (path) => {
      await assert.rejects(load({ "config-file": path }), (error: UsageError) => {
        assert.equal(error.exitCode, 1);
        assert.ok(error.message.startsWith(`Error reading config file ${path}: `));
        return true;
      });
    });
  });
  await t.step("JSON is accepted", async () => {
    await withConfigFile(`{"endpoint": "x", "token": "y", "files": ["/a:/b"]}`, async (path) => {
      const config = await load({ "config-file": path });
      assert.deepEqual(config.files, [{ hostPath: "/a", destination: "/b" }]);
    }, "json");
  });
});

Deno.test("loadConfig() validates in the original's order with its messages", async (t) => {
  const cases: [string, Record<string, unknown>, Record<string, string>, string][] = [
    [
      "job-id without disconnect-after-job",
      { "job-id": "j1" },
      {},
      "job-id can only be used if disconnect-after-job is also used. Exiting...",
    ],
    [
      "bad upload-job-logs (checked before the endpoint)",
      { "upload-job-logs": "sometimes" },
      {},
      "Unsupported value 'sometimes' for 'upload-job-logs'. Allowed values are: " +
      "[never always when-trimmed]. Exiting...",
    ],
    ["no endpoint", {}, {}, "Semaphore endpoint was not specified. Exiting..."],
    ["no token", { endpoint: "x" }, {}, "Agent registration token was not specified. Exiting..."],
    [
      "negative idle timeout",
      { ...REQUIRED, "disconnect-after-idle-timeout": -1 },
      {},
      "Idle timeout can't be negative. Exiting...",
    ],
    [
      "negative pod start timeout",
      { ...REQUIRED, "kubernetes-pod-start-timeout": -5 },
      {},
      "Kubernetes pod start timeout can't be negative. Exiting...",
    ],
    [
      "env var without =",
      { ...REQUIRED, "env-vars": ["A=1", "B"] },
      {},
      "Error parsing --env-vars: B is not a valid environment variable",
    ],
    [
      "env var value containing = (quirk)",
      { ...REQUIRED, "env-vars": ["A=b=c"] },
      {},
      "Error parsing --env-vars: A=b=c is not a valid environment variable",
    ],
    [
      "file without :",
      { ...REQUIRED, files: ["/a/b"] },
      {},
      "Error parsing --files: /a/b is not a valid file injection",
    ],
    [
      "label without =",
      { ...REQUIRED, "kubernetes-labels": ["app"] },
      {},
      "Error parsing --kubernetes-labels: app is not a valid label",
    ],
    [
      "short name",
      { ...REQUIRED, name: "short" },
      {},
      "Agent name validation failed: name should have between 8 and 80 characters. " +
      "'short' has 5",
    ],
    [
      "long name",
      { ...REQUIRED, name: "x".repeat(81) },
      {},
      "Agent name validation failed: name should have between 8 and 80 characters. " +
      `'${"x".repeat(81)}' has 81`,
    ],
    [
      "short name from env",
      { ...REQUIRED, "name-from-env": "MY_NAME" },
      { MY_NAME: "abc" },
      "Agent name validation failed: name should have between 8 and 80 characters. 'abc' has 3",
    ],
    [
      "bad image regex",
      { ...REQUIRED, "kubernetes-allowed-images": ["("] },
      {},
      "Error creating image validator: Invalid regular expression: /(/: Unterminated group",
    ],
    [
      "errors in later steps wait for earlier ones (name before regex)",
      { ...REQUIRED, name: "short", "kubernetes-allowed-images": ["("] },
      {},
      "Agent name validation failed: name should have between 8 and 80 characters. " +
      "'short' has 5",
    ],
  ];
  for (const [what, flags, env, message] of cases) {
    await t.step(what, () => assertFatal(load(flags, env), message));
  }
  await t.step("the same values from env vars", async () => {
    await assertFatal(
      load({}, {
        SEMAPHORE_AGENT_ENDPOINT: "x",
        SEMAPHORE_AGENT_TOKEN: "y",
        SEMAPHORE_AGENT_DISCONNECT_AFTER_IDLE_TIMEOUT: "-3",
      }),
      "Idle timeout can't be negative. Exiting...",
    );
    await assertFatal(
      load(REQUIRED, { SEMAPHORE_AGENT_JOB_ID: "j1" }),
      "job-id can only be used if disconnect-after-job is also used. Exiting...",
    );
  });
  await t.step("job-id with disconnect-after-job is fine", async () => {
    const config = await load({ ...REQUIRED, "job-id": "j1", "disconnect-after-job": true });
    assert.equal(config.jobId, "j1");
  });
});

Deno.test("loadConfig() applies the agent name rules", async (t) => {
  await t.step("8 and 80 characters are accepted", async () => {
    assert.equal((await load({ ...REQUIRED, name: "12345678" })).name, "12345678");
    assert.equal((await load({ ...REQUIRED, name: "y".repeat(80) })).name, "y".repeat(80));
  });
  await t.step("a URL has no length limit", async () => {
    const url = "https://sts.amazonaws.com/?Action=GetCallerIdentity&X-Amz-Signature=" +
      "a".repeat(200);
    const config = await load({ ...REQUIRED, name: url });
    assert.equal(config.name, url);
    assert.equal(config.nameIsUrl, true);
    assert.equal((await load({ ...REQUIRED, name: "/x" })).nameIsUrl, true);
  });
  await t.step("name-from-env reads the variable", async () => {
    const config = await load({ ...REQUIRED, "name-from-env": "MY_NAME" }, {
      MY_NAME: "from-the-env",
    });
    assert.equal(config.name, "from-the-env");
    assert.equal(config.nameSource, "name-from-env");
  });
  await t.step("name wins over name-from-env", async () => {
    const config = await load({ ...REQUIRED, name: "the-flag-name", "name-from-env": "X" });
    assert.equal(config.name, "the-flag-name");
  });
  await t.step("SEMAPHORE_AGENT_NAME sets the name", async () => {
    const config = await load(REQUIRED, { SEMAPHORE_AGENT_NAME: "env-agent-name" });
    assert.equal(config.name, "env-agent-name");
  });
  await t.step("no name gives a random 20-character base64url name", async () => {
    const config = await load(REQUIRED);
    assert.equal(config.nameSource, "random");
    assert.match(config.name, /^[A-Za-z0-9_-]{20}$/);
    assert.notEqual((await load(REQUIRED)).name, config.name);
    assert.equal(randomAgentName(() => new Uint8Array(15).fill(0xff)), "____________________");
  });
});

Deno.test("loadConfig() reads the flush timeout within 1-900 s", async () => {
  const config = await load(REQUIRED, { SEMAPHORE_AGENT_LOGS_FLUSH_TIMEOUT: "900" });
  assert.equal(config.logsFlushTimeoutSeconds, 900);
  await assertFatal(
    load(REQUIRED, { SEMAPHORE_AGENT_LOGS_FLUSH_TIMEOUT: "0" }),
    "Cannot read SEMAPHORE_AGENT_LOGS_FLUSH_TIMEOUT: '0' must be between 1 and 900",
  );
});

Deno.test("loadConfig() refuses the Kubernetes executor, which is not implemented", async () => {
  await assertFatal(
    load({ ...REQUIRED, "kubernetes-executor": true }),
    "Cannot start agent: kubernetes-executor is not supported by this agent. Exiting...",
  );
});

async function runAgent(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stderr: string; stdout: string }> {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, "start", ...args],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "/tmp", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("agent start exits 1 on a bad configuration and 2 on a bad flag", async (t) => {
  await t.step("no endpoint", async () => {
    const { code, stderr } = await runAgent(["--token", "x"]);
    assert.equal(code, 1);
    assert.match(stderr, /Semaphore endpoint was not specified\. Exiting\.\.\./);
  });
  await t.step("job-id from env", async () => {
    const { code, stderr } = await runAgent([], {
      SEMAPHORE_AGENT_ENDPOINT: "x",
      SEMAPHORE_AGENT_TOKEN: "y",
      SEMAPHORE_AGENT_JOB_ID: "j",
    });
    assert.equal(code, 1);
    assert.match(stderr, /job-id can only be used if disconnect-after-job is also used/);
  });
  await t.step("unknown key in the config file", async () => {
    await withConfigFile("endpoint: x\nnope: 1\n", async (path) => {
      const { code, stderr } = await runAgent(["--config-file", path]);
      assert.equal(code, 1);
      assert.match(stderr, /Unrecognized option 'nope'\. Exiting\.\.\./);
    });
  });
  await t.step("unknown flag", async () => {
    const { code } = await runAgent(["--config", "x.yaml"]);
    assert.equal(code, 2);
  });
  await t.step("bad integer", async () => {
    const { code } = await runAgent(["--disconnect-after-idle-timeout", "soon"]);
    assert.equal(code, 2);
  });
});

Deno.test("agent start never takes the argument after a bool flag as its value (pflag NoOptDefVal)", async () => {
  // pflag: `--disconnect-after-job false` sets the flag to true and leaves `false` as a
  // positional argument; only `--disconnect-after-job=false` sets false.
  const home = await Deno.makeTempDir();
  const tmp = await Deno.makeTempDir();
  try {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
    hub.scheduleShutdown();
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../main.ts", import.meta.url).pathname,
        "start",
        "--endpoint",
        hub.endpoint,
        "--token",
        hub.registrationToken,
        "--no-https",
        "--disconnect-after-job",
        "false",
      ],
      env: { HOME: home, TMPDIR: tmp },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(hub.registrations.length, 1);
    assert.equal(hub.registrations[0].single_job, true);
  } finally {
    await Deno.remove(home, { recursive: true }).catch(() => {});
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
});

Deno.test("examples/agent-config.yaml is a valid configuration", async () => {
  const path = new URL("../examples/agent-config.yaml", import.meta.url).pathname;
  const config = await load({ "config-file": path });
  assert.equal(config.endpoint, "myorg.semaphoreci.com");
  assert.equal(config.uploadJobLogs, "never");
  assert.equal(config.nameSource, "random");
});
