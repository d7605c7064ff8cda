/**
 * What Prometheus scraping costs a job (issue 11): `agent serve --metrics-addr` runs a job
 * printing N bytes (100 MB; 10 MB with `--quick`) while a client scrapes `/metrics` every
 * 100 ms, against the same job on the same kind of agent with nobody scraping. Time is `POST
 * /jobs` to the `finished` callback; runs alternate, median of three each. Goal: < 5 % slower.
 *
 * @module
 */

import type { BenchContext, BenchRow } from "./bench.ts";
import { startCallbackReceiver } from "../support/serve_agent.ts";
import { freshDir, jobBody, median, startAgent } from "./serve_bench.ts";
import { makeLeafCert } from "../support/serve_agent.ts";
import { freePort } from "../support/prometheus.ts";

async function timedJob(
  context: BenchContext,
  tls: Awaited<ReturnType<typeof makeLeafCert>>,
  bytes: number,
  scrape: boolean,
): Promise<{ ms: number; scrapes: number }> {
  const port = freePort();
  const home = await freshDir(context, "metrics-home");
  const tmpdir = await freshDir(context, "metrics-tmp");
  await using receiver = startCallbackReceiver();
  await using agent = await startAgent(context, tls, home, tmpdir, [
    "--metrics-addr",
    `127.0.0.1:${port}`,
  ]);
  let scrapes = 0;
  let scraping = scrape;
  const scraper = (async () => {
    while (scraping) {
      const next = new Promise((r) => setTimeout(r, 100));
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      await res.text();
      scrapes++;
      await next;
    }
  })();
  const producer =
    `yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c ${bytes}`;
  const started = performance.now();
  const posted = await agent.fetch("/jobs", {
    method: "POST",
    body: jobBody(`metrics-${crypto.randomUUID()}`, [producer], receiver.base),
  });
  await posted.body?.cancel();
  const [finished] = await receiver.waitFor(1);
  const ms = performance.now() - started;
  scraping = false;
  await scraper;
  if (finished.body !== '{"result": "passed"}') {
    throw new Error(`Cannot measure scraping: the job ended with ${finished.body}`);
  }
  return { ms, scrapes };
}

/** The scraping figure, beside the same job unscraped. */
export async function metricsBench(context: BenchContext): Promise<BenchRow[]> {
  const bytes = context.quick ? 10_000_000 : 100_000_000;
  const tls = await makeLeafCert(await freshDir(context, "metrics-cert"));
  await timedJob(context, tls, bytes, false); // warm-up
  const scraped: number[] = [];
  const plain: number[] = [];
  let scrapes = 0;
  for (let i = 0; i < 3; i++) {
    const run = await timedJob(context, tls, bytes, true);
    scraped.push(run.ms);
    scrapes += run.scrapes;
    plain.push((await timedJob(context, tls, bytes, false)).ms);
  }
  const mbps = (ms: number) => bytes / 1e6 / (ms / 1000);
  const agent = mbps(median(scraped));
  const floor = mbps(median(plain));
  return [{
    figure: "serve: output throughput while scraped every 100 ms",
    agent: `${agent.toFixed(1)} MB/s`,
    floor: `${floor.toFixed(1)} MB/s`,
    ratio: `${((agent / floor) * 100).toFixed(0)} %`,
    note: `same job, nobody scraping; ${scrapes} scrapes in all, median of 3 (goal >= 95 %)`,
  }];
}
