import assert from "node:assert/strict";
import {
  compareApiVersions,
  DockerClient,
  dockerSocketPath,
  DockerTimeoutError,
  encodeRegistryAuth,
  parseImageReference,
  progressLine,
} from "../executors/docker_api.ts";
import { HttpError } from "../lib/util/errors.ts";
import { dockerSkipReason, ensureTestImages, TEST_IMAGES } from "./support/test_images.ts";
import { registrySkipReason, startRegistry } from "./support/registry.ts";
import { startWedgedDocker } from "./support/wedged_docker.ts";

const dockerSkip = await dockerSkipReason();
const registrySkip = dockerSkip ?? await registrySkipReason();
const LABEL = "semaphore-agent.test";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

Deno.test("dockerSocketPath() honours DOCKER_HOST=unix://PATH and defaults to /var/run/docker.sock", () => {
  assert.equal(dockerSocketPath(undefined), "/var/run/docker.sock");
  assert.equal(dockerSocketPath(""), "/var/run/docker.sock");
  assert.equal(dockerSocketPath("unix:///run/user/1000/docker.sock"), "/run/user/1000/docker.sock");
  assert.throws(
    () => dockerSocketPath("tcp://127.0.0.1:2375"),
    {
      message:
        "Cannot use DOCKER_HOST 'tcp://127.0.0.1:2375': only unix sockets (unix:///path) are supported",
    },
  );
});

Deno.test("parseImageReference() splits registry, repository and tag like the pull endpoint wants", () => {
  assert.deepEqual(parseImageReference("ruby"), {
    repository: "ruby",
    tag: "latest",
    registry: "docker.io",
  });
  assert.deepEqual(parseImageReference("semaphoreci/ruby:2.6"), {
    repository: "semaphoreci/ruby",
    tag: "2.6",
    registry: "docker.io",
  });
  assert.deepEqual(parseImageReference("127.0.0.1:5000/team/app:1"), {
    repository: "127.0.0.1:5000/team/app",
    tag: "1",
    registry: "127.0.0.1:5000",
  });
  assert.deepEqual(parseImageReference("localhost:5000/app"), {
    repository: "localhost:5000/app",
    tag: "latest",
    registry: "localhost:5000",
  });
  assert.deepEqual(parseImageReference("gcr.io/p/app@sha256:abc"), {
    repository: "gcr.io/p/app",
    tag: "sha256:abc",
    registry: "gcr.io",
  });
});

Deno.test("encodeRegistryAuth() gives base64url JSON of the credentials", () => {
  const encoded = encodeRegistryAuth({
    username: "u?",
    password: "p>>ü",
    serveraddress: "127.0.0.1:5000",
  });
  assert.ok(!/[+/]/.test(encoded));
  const json = decoder.decode(
    Uint8Array.from(
      atob(encoded.replaceAll("-", "+").replaceAll("_", "/")),
      (c) => c.charCodeAt(0),
    ),
  );
  assert.deepEqual(JSON.parse(json), {
    username: "u?",
    password: "p>>ü",
    serveraddress: "127.0.0.1:5000",
  });
});

Deno.test("progressLine() prints layer steps and skips byte-count updates", () => {
  assert.equal(progressLine({ status: "Pulling fs layer", id: "abc" }), "abc: Pulling fs layer");
  assert.equal(progressLine({ status: "Digest: sha256:1" }), "Digest: sha256:1");
  assert.equal(
    progressLine({ status: "Downloading", id: "abc", progressDetail: { current: 1, total: 9 } }),
    undefined,
  );
  assert.equal(compareApiVersions("1.41", "1.9"), 32);
  assert.ok(compareApiVersions("1.41", "1.45") < 0);
});

Deno.test("DockerClient.connect() gives up on a daemon that never answers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await using daemon = startWedgedDocker(dir);
    const started = performance.now();
    await assert.rejects(
      DockerClient.connect({ socketPath: daemon.path, timeouts: { callMs: 300 } }),
      (error: Error) => {
        assert.ok(error instanceof DockerTimeoutError);
        assert.equal(
          error.message,
          `The Docker daemon at unix://${daemon.path} did not answer GET /version within 300ms`,
        );
        return true;
      },
    );
    assert.ok(performance.now() - started < 3000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DockerClient calls, the attach upgrade and cleanup give up on a wedged daemon", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await using daemon = startWedgedDocker(dir, { answerVersion: true });
    await using client = await DockerClient.connect({
      socketPath: daemon.path,
      timeouts: { callMs: 300, progressMs: 300 },
    });
    const calls: Array<[string, () => Promise<unknown>, string]> = [
      ["inspectImage", () => client.inspectImage("busybox"), "GET /images/busybox/json"],
      ["pullImage", () => client.pullImage("busybox"), "POST /images/create"],
      [
        "createContainer",
        () => client.createContainer("x", { Image: "busybox" }),
        "POST /containers/create",
      ],
      ["startContainer", () => client.startContainer("c1"), "POST /containers/c1/start"],
      ["attachContainer", () => client.attachContainer("c1"), "POST /containers/c1/attach"],
      ["killContainer", () => client.killContainer("c1"), "POST /containers/c1/kill"],
      ["removeContainer", () => client.removeContainer("c1"), "DELETE /containers/c1"],
      ["listContainers", () => client.listContainers(), "GET /containers/json"],
      ["removeNetwork", () => client.removeNetwork("n1"), "DELETE /networks/n1"],
    ];
    for (const [name, call, what] of calls) {
      await t.step(name, async () => {
        const started = performance.now();
        await assert.rejects(call(), (error: Error) => {
          assert.ok(error instanceof DockerTimeoutError, String(error));
          assert.equal(
            error.message,
            `The Docker daemon at unix://${daemon.path} did not answer ${what} within 300ms`,
          );
          return true;
        });
        const elapsed = performance.now() - started;
        assert.ok(elapsed >= 250 && elapsed < 3000, `gave up after ${elapsed} ms`);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DockerClient.connect() says which socket it cannot reach", async () => {
  await assert.rejects(
    () => DockerClient.connect({ socketPath: "/nonexistent/docker.sock" }),
    (error: Error) => {
      assert.match(
        error.message,
        /^Cannot connect to the Docker daemon at unix:\/\/\/nonexistent\/docker\.sock: .*No such file or directory/,
      );
      return true;
    },
  );
});

Deno.test({
  name: "DockerClient runs a TTY container through a hijacked attach stream",
  ignore: dockerSkip !== undefined,
  async fn() {
    const images = await ensureTestImages();
    await using client = await DockerClient.connect();
    assert.match(client.apiVersion, /^1\.\d+$/);
    const id = await client.createContainer(undefined, {
      Image: images.bash,
      Cmd: ["bash", "--norc"],
      Tty: true,
      OpenStdin: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Labels: { [LABEL]: "attach" },
      HostConfig: { NetworkMode: "none" },
    });
    try {
      await using stream = await client.attachContainer(id);
      await client.startContainer(id);
      await stream.write(encoder.encode("stty -echo; echo hel''lo; exit 3\n"));
      let output = "";
      for await (const chunk of stream.readable) output += decoder.decode(chunk);
      assert.match(output, /hello\r\n/);
      assert.equal(await client.waitContainer(id), 3);
      const listed = await client.listContainers({ label: [`${LABEL}=attach`] });
      assert.deepEqual(listed.map((c) => c.Id), [id]);
      assert.equal((await client.inspectContainer(id))?.State.ExitCode, 3);
      await assert.rejects(() => client.exec(id, ["true"]), (error: HttpError) => {
        assert.ok(error instanceof HttpError);
        assert.equal(error.status, 409);
        assert.match(error.message, /is not running/);
        return true;
      });
    } finally {
      await client.removeContainer(id);
    }
    assert.equal(await client.inspectContainer(id), undefined);
    await client.removeContainer(id); // gone already: fine
  },
});

Deno.test({
  name: "DockerClient execs with and without a TTY and reports daemon errors as HttpError",
  ignore: dockerSkip !== undefined,
  async fn() {
    const images = await ensureTestImages();
    await using client = await DockerClient.connect();
    const id = await client.createContainer(undefined, {
      Image: images.nobash,
      Cmd: ["sleep", "60"],
      Labels: { [LABEL]: "exec" },
      HostConfig: { NetworkMode: "none" },
    });
    try {
      await client.startContainer(id);
      const result = await client.exec(id, ["sh", "-c", "echo out; echo err >&2; exit 4"]);
      assert.deepEqual(result, { exitCode: 4, stdout: "out\n", stderr: "err\n" });
      const execId = await client.createExec(id, { Cmd: ["echo", "tty"], Tty: true });
      await using stream = await client.startExec(execId, { tty: true });
      let output = "";
      for await (const chunk of stream.readable) output += decoder.decode(chunk);
      assert.equal(output, "tty\r\n");
      await assert.rejects(
        () => client.attachContainer("no-such-container-here"),
        (error: HttpError) => {
          assert.ok(error instanceof HttpError);
          assert.equal(error.status, 404);
          assert.match(error.message, /No such container: no-such-container-here/);
          return true;
        },
      );
    } finally {
      await client.removeContainer(id);
    }
  },
});

Deno.test({
  name: "DockerClient creates, lists by label and removes networks",
  ignore: dockerSkip !== undefined,
  async fn() {
    await using client = await DockerClient.connect();
    const value = crypto.randomUUID();
    const id = await client.createNetwork(`agent-test-${value}`, { labels: { [LABEL]: value } });
    const listed = await client.listNetworks({ label: [`${LABEL}=${value}`] });
    assert.deepEqual(listed.map((n) => n.Id), [id]);
    await client.removeNetwork(id);
    await client.removeNetwork(id); // gone already: fine
    assert.deepEqual(await client.listNetworks({ label: [`${LABEL}=${value}`] }), []);
  },
});

Deno.test({
  name: "DockerClient pulls from a private registry only with the right credentials",
  ignore: registrySkip !== undefined,
  async fn() {
    const images = await ensureTestImages();
    await using registry = await startRegistry();
    const reference = await registry.push(images.nobash, "agent-test/api-private:1");
    await using client = await DockerClient.connect();
    const good = {
      username: registry.username,
      password: registry.password,
      serveraddress: registry.address,
    };
    assert.equal(await client.checkAuth(good), "Login Succeeded");
    await assert.rejects(
      () => client.checkAuth({ ...good, password: "wrong" }),
      (error: HttpError) => error instanceof HttpError && /401 Unauthorized/.test(error.message),
    );
    await assert.rejects(
      () => client.pullImage(reference, { auth: { ...good, password: "wrong" } }),
      /unauthorized|authentication required/,
    );
    assert.equal(await client.inspectImage(reference), undefined);
    const lines: string[] = [];
    await client.pullImage(reference, { auth: good, onLine: (line) => lines.push(line) });
    assert.ok(lines.includes(`Status: Downloaded newer image for ${reference}`), lines.join("\n"));
    assert.ok(await client.inspectImage(reference));
    await client.removeImage(reference);
    assert.ok(await client.inspectImage(TEST_IMAGES.nobash));
  },
});
