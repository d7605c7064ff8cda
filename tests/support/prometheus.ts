/**
 * A real Prometheus server for the metrics tests (Debian's `prometheus` package, installed by
 * `.ci/run`): started on loopback with its own temporary storage, scraping the given targets
 * every second, queried through its HTTP API.
 *
 * @module
 */

/**
 * Why Prometheus tests cannot run here, or undefined when they can. With
 * `AGENT_TEST_REQUIRE_ALL=1` nothing is skipped: the tests run and fail loudly.
 */
export async function prometheusSkipReason(): Promise<string | undefined> {
  for (const tool of ["prometheus", "promtool"]) {
    try {
      await new Deno.Command(tool, { args: ["--version"], stdout: "null", stderr: "null" })
        .output();
    } catch {
      if (Deno.env.get("AGENT_TEST_REQUIRE_ALL") === "1") return undefined;
      const reason = `${tool} is not installed (Debian package prometheus)`;
      console.log(`Skipping Prometheus tests: ${reason}`);
      return reason;
    }
  }
  return undefined;
}

/** Runs `promtool` with `input` on stdin; resolves with its exit code and output. */
export async function promtool(
  args: readonly string[],
  input = "",
): Promise<{ code: number; output: string }> {
  const child = new Deno.Command("promtool", {
    args: [...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code, output: decode(stdout) + decode(stderr) };
}

/** A free loopback port (bound and released; the caller binds it right away). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** One sample of an instant-vector query. */
export interface Sample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A running Prometheus. */
export interface Prometheus extends AsyncDisposable {
  readonly base: string;
  /** Runs an instant query. */
  query(expr: string): Promise<Sample[]>;
  /** Queries until `accept` says yes, or fails after `timeoutMs` with the last answer. */
  waitFor(expr: string, accept: (s: Sample[]) => boolean, timeoutMs?: number): Promise<Sample[]>;
}

/** Starts Prometheus scraping `targets` (`host:port`) every second. */
export async function startPrometheus(targets: readonly string[]): Promise<Prometheus> {
  const dir = await Deno.makeTempDir({ prefix: "prometheus_" });
  const config = `${dir}/prometheus.yml`;
  await Deno.writeTextFile(
    config,
    [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 900ms",
      "scrape_configs:",
      "  - job_name: semaphore-agent",
      "    static_configs:",
      `      - targets: [${targets.map((t) => JSON.stringify(t)).join(", ")}]`,
      "",
    ].join("\n"),
  );
  const port = freePort();
  const child = new Deno.Command("prometheus", {
    args: [
      `--config.file=${config}`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const base = `http://127.0.0.1:${port}`;
  const query = async (expr: string): Promise<Sample[]> => {
    const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`, {
      signal: AbortSignal.timeout(5000),
    });
    const body = await res.json() as {
      status: string;
      data?: { result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (body.status !== "success" || !body.data) {
      throw new Error(`Prometheus query ${expr} failed: ${JSON.stringify(body)}`);
    }
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  };
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await child.status;
    await stderr;
    await Deno.remove(dir, { recursive: true });
  };
  // Ready when its API answers (it needs a moment to open its storage).
  const deadline = performance.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(`${base}/-/ready`, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (performance.now() > deadline) {
      await stop();
      throw new Error(`Prometheus did not become ready: ${await stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    base,
    query,
    async waitFor(expr, accept, timeoutMs = 30_000) {
      const end = performance.now() + timeoutMs;
      let last: Sample[] = [];
      while (performance.now() < end) {
        last = await query(expr);
        if (accept(last)) return last;
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new Error(`Prometheus never gave the expected ${expr}: ${JSON.stringify(last)}`);
    },
    [Symbol.asyncDispose]: stop,
  };
}
